//! The safe wrapper on the converted reference model (tiny-llama-code, bf16).
//!
//! Model file: `LIBLLM_TEST_MODEL`, else `tests/work/tiny-llama-code-bf16.llm`
//! under the library directory (`LIBLLM_LIB_DIR`, default `build`, relative to
//! the repository root). Reference outputs: `LIBLLM_SHARED_DIR` (default
//! `../shared` next to the repository). Tests needing them print a message
//! and pass when they are absent.
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use libllm::{ChatMessage, Error, GenerateParams, Model, Session, SessionParams, Status, StopReason, Token};

const PROMPT: &str = "Once upon a time, there was a little girl who";
const PROMPT_IDS: [Token; 12] = [1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 1058];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LIBLLM_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let lib_dir = match std::env::var_os("LIBLLM_LIB_DIR") {
        Some(d) if !d.is_empty() => repo_root().join(d), // join keeps an absolute path as is
        _ => repo_root().join("build"),
    };
    lib_dir.join("tests/work/tiny-llama-code-bf16.llm")
}

fn reference_json() -> PathBuf {
    let shared = std::env::var_os("LIBLLM_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    shared.join("models/tiny-llama-code/reference/reference.json")
}

/// The reference model, or None (with a message) when it is absent.
fn load_model(test: &str) -> Option<Model> {
    let path = model_path();
    if !path.exists() {
        println!(
            "SKIP {test}: {} not found (build the tests or set LIBLLM_TEST_MODEL)",
            path.display()
        );
        return None;
    }
    Some(Model::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display())))
}

/// `greedy_ids` of case 0 of reference.json, by a small hand-written
/// extraction: the first `"greedy_ids": [ ... ]` in the file.
fn reference_greedy_ids(test: &str) -> Option<Vec<Token>> {
    let path = reference_json();
    let Ok(json) = std::fs::read_to_string(&path) else {
        println!(
            "SKIP {test}: {} not found (set LIBLLM_SHARED_DIR)",
            path.display()
        );
        return None;
    };
    Some(int_array_after(&json, "\"greedy_ids\""))
}

fn int_array_after(json: &str, key: &str) -> Vec<Token> {
    let at = json
        .find(key)
        .unwrap_or_else(|| panic!("{key} not in reference.json"))
        + key.len();
    let open = at + json[at..].find('[').expect("[");
    let close = open + json[open..].find(']').expect("]");
    json[open + 1..close]
        .split(',')
        .map(|n| {
            n.trim()
                .parse::<Token>()
                .unwrap_or_else(|_| panic!("not an integer: {n:?}"))
        })
        .collect()
}

fn greedy(max_tokens: i32) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ignore_eos: true,
        ..GenerateParams::greedy()
    }
}

/// The text llm_generate must stream for the reference continuation:
/// decode(prompt + continuation) minus decode(prompt).
fn expected_text(model: &Model, want: &[Token]) -> String {
    let all: Vec<Token> = PROMPT_IDS.iter().chain(want).copied().collect();
    let full = model.detokenize(&all).unwrap();
    let before = model.detokenize(&PROMPT_IDS).unwrap();
    assert!(full.starts_with(&before));
    full[before.len()..].to_string()
}

#[test]
fn missing_model_file_is_an_io_error_naming_the_path() {
    let path = "/nonexistent-dir/no-such-model.llm";
    let e: Error = Model::load(path).unwrap_err();
    assert_eq!(e.status, Status::Io, "{e}");
    assert!(
        e.message.contains(path),
        "message does not name the path: {}",
        e.message
    );
    assert!(e.to_string().contains(path));
    assert_eq!(e.status.name(), "LLM_ERR_IO");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    assert!(boxed.to_string().contains("LLM_ERR_IO"));
}

#[test]
fn bad_arguments_are_reported_before_the_c_call() {
    assert_eq!(Model::load("a\0b").unwrap_err().status, Status::InvalidArgument);
}

#[test]
fn info_tokenize_detokenize() {
    let Some(model) = load_model("info_tokenize_detokenize") else {
        return;
    };
    let info = model.info().unwrap();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.vocab_size, 32000);
    assert_eq!(model.vocab_size(), 32000);
    assert_eq!(info.bos_token, Some(1));
    assert!(info.n_layers > 0 && info.hidden_size > 0 && info.context_length > 0);
    assert!(!info.vocab_only);
    println!("{info:?}");

    let ids = model.tokenize(PROMPT, true).unwrap();
    assert_eq!(ids, PROMPT_IDS);
    assert_eq!(model.tokenize(PROMPT, false).unwrap(), PROMPT_IDS[1..]);
    let text = model.detokenize(&ids).unwrap();
    assert!(text.starts_with("<s>") && text.ends_with(PROMPT), "{text:?}");
    // Special-token strings: recognised by default, plain text when asked.
    assert_eq!(model.tokenize("<s>", false).unwrap(), vec![1]);
    assert_ne!(model.tokenize_with("<s>", false, false).unwrap(), vec![1]);
    assert_eq!(model.tokenize("", false).unwrap(), Vec::<Token>::new());
    // A long text goes through the buffer-growing path.
    let long = "x".repeat(10_000);
    let long_ids = model.tokenize(&long, false).unwrap();
    assert_eq!(model.detokenize(&long_ids).unwrap(), long);

    assert_eq!(model.token_to_piece(9038).unwrap(), b" Once");
    assert_eq!(model.token_to_piece(-5).unwrap_err().status, Status::InvalidToken);
    assert!(model.is_eog(info.eos_token.unwrap()));
    assert!(!model.is_eog(9038));
}

#[test]
fn greedy_eval_and_sample_match_the_reference() {
    let Some(model) = load_model("greedy_eval_and_sample_match_the_reference") else {
        return;
    };
    let Some(want) = reference_greedy_ids("greedy_eval_and_sample_match_the_reference") else {
        return;
    };
    assert_eq!(want.len(), 64);
    let mut session = model.session().unwrap();
    assert!(session.logits().is_none());
    session.eval(&PROMPT_IDS).unwrap();
    assert_eq!(session.n_tokens(), PROMPT_IDS.len());
    let params = GenerateParams::greedy();
    let mut got = Vec::new();
    for i in 0..want.len() {
        let logits = session.logits().expect("logits after eval");
        assert_eq!(logits.len(), model.vocab_size());
        let argmax = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        let t = session.sample(&params).unwrap();
        if i == 0 {
            assert_eq!(argmax as Token, t, "greedy sampling is the argmax");
        }
        got.push(t);
        session.eval(&[t]).unwrap();
    }
    assert_eq!(got, want);
    assert_eq!(session.n_tokens(), PROMPT_IDS.len() + 64);
    session.reset().unwrap();
    assert_eq!(session.n_tokens(), 0);
    assert_eq!(session.eval(&[40_000]).unwrap_err().status, Status::InvalidToken);
}

#[test]
fn streaming_iterator_and_callback_give_the_reference_text() {
    let Some(model) = load_model("streaming_iterator_and_callback_give_the_reference_text") else {
        return;
    };
    let Some(want) = reference_greedy_ids("streaming_iterator_and_callback_give_the_reference_text") else {
        return;
    };
    let expected = expected_text(&model, &want);
    let params = greedy(64);

    let mut session = model.session().unwrap();
    let mut callback_text = String::new();
    let mut tokens = Vec::new();
    let reason = session
        .generate_with_tokens(PROMPT, &params, |piece, token| {
            callback_text.push_str(piece);
            tokens.extend(token);
            true
        })
        .unwrap();
    assert_eq!(reason, StopReason::MaxTokens);
    assert_eq!(tokens, want);
    assert_eq!(callback_text, expected);

    let mut session = model.session().unwrap();
    let mut pieces = session.generate(PROMPT, &params);
    let mut iter_text = String::new();
    let mut n = 0;
    for piece in &mut pieces {
        let piece = piece.unwrap();
        assert!(!piece.is_empty());
        iter_text.push_str(&piece);
        n += 1;
    }
    assert_eq!(pieces.stop_reason(), Some(StopReason::MaxTokens));
    drop(pieces);
    assert!(n > 1, "the text came in {n} pieces");
    assert_eq!(iter_text, callback_text);
    assert_eq!(session.stop_reason(), StopReason::MaxTokens);
    assert_eq!(session.n_tokens(), PROMPT_IDS.len() + 64);

    // Collecting into Result<String> works too; "" continues the context.
    let more: String = session
        .generate("", &greedy(8))
        .collect::<libllm::Result<String>>()
        .unwrap();
    assert!(!more.is_empty());
    assert_eq!(session.n_tokens(), PROMPT_IDS.len() + 72);
}

#[test]
fn callback_can_stop_and_stop_strings_work() {
    let Some(model) = load_model("callback_can_stop_and_stop_strings_work") else {
        return;
    };
    let Some(want) = reference_greedy_ids("callback_can_stop_and_stop_strings_work") else {
        return;
    };
    let expected = expected_text(&model, &want);
    let mut session = model.session().unwrap();
    let mut n = 0;
    let reason = session
        .generate_with(PROMPT, &greedy(64), |_| {
            n += 1;
            n < 3
        })
        .unwrap();
    assert_eq!(reason, StopReason::Callback);
    assert_eq!(n, 3);
    assert_eq!(
        session.n_tokens(),
        PROMPT_IDS.len() + 3,
        "every delivered token stays in the context"
    );

    session.reset().unwrap();
    let params = GenerateParams {
        stop: vec!["office".into()],
        ..greedy(64)
    };
    let text: String = session
        .generate(PROMPT, &params)
        .collect::<libllm::Result<String>>()
        .unwrap();
    assert_eq!(session.stop_reason(), StopReason::StopString);
    assert_eq!(text, expected[..expected.find("office").unwrap()]);
}

#[test]
fn dropping_the_iterator_early_leaves_the_session_usable() {
    let Some(model) = load_model("dropping_the_iterator_early_leaves_the_session_usable") else {
        return;
    };
    let Some(want) = reference_greedy_ids("dropping_the_iterator_early_leaves_the_session_usable") else {
        return;
    };
    let mut session = model.session().unwrap();
    let first: Vec<String> = session
        .generate(PROMPT, &greedy(64))
        .take(3)
        .map(|p| p.unwrap())
        .collect();
    assert_eq!(first.len(), 3);
    // Stopped by the callback: the worker was at most one token ahead.
    assert_eq!(session.stop_reason(), StopReason::Callback);
    let n = session.n_tokens();
    assert!(
        (PROMPT_IDS.len() + 3..=PROMPT_IDS.len() + 4).contains(&n),
        "n_tokens = {n}"
    );

    // The session goes on from there...
    let rest: String = session
        .generate("", &greedy(4))
        .collect::<libllm::Result<String>>()
        .unwrap();
    assert!(!rest.is_empty());
    assert_eq!(session.n_tokens(), n + 4);
    // ...and after a reset gives the full reference continuation again.
    session.reset().unwrap();
    let mut tokens = Vec::new();
    session
        .generate_with_tokens(PROMPT, &greedy(64), |_, t| {
            tokens.extend(t);
            true
        })
        .unwrap();
    assert_eq!(tokens, want);
    // Dropping before the first piece also works.
    drop(session.generate(PROMPT, &greedy(64)));
    session.eval(&[263]).unwrap();
}

#[test]
fn generation_errors_come_through_the_iterator() {
    let Some(model) = load_model("generation_errors_come_through_the_iterator") else {
        return;
    };
    let mut session = model.session().unwrap();
    // Nothing to generate from: empty prompt, empty context, no BOS.
    let nothing = GenerateParams {
        add_special: false,
        ..greedy(4)
    };
    let items: Vec<_> = session.generate("", &nothing).collect();
    assert_eq!(items.len(), 1);
    let e = items.into_iter().next().unwrap().unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(!e.message.is_empty(), "the message is read on the worker thread");

    let too_many = GenerateParams {
        stop: vec!["a".into(); 9],
        ..greedy(4)
    };
    let mut it = session.generate(PROMPT, &too_many);
    assert_eq!(it.next().unwrap().unwrap_err().status, Status::InvalidArgument);
    assert!(it.next().is_none());
    drop(it);
    assert_eq!(
        session
            .generate("a\0b", &greedy(4))
            .next()
            .unwrap()
            .unwrap_err()
            .status,
        Status::InvalidArgument
    );
    assert_eq!(
        session.generate_with("", &nothing, |_| true).unwrap_err().status,
        Status::InvalidArgument
    );
    let bad = GenerateParams {
        repeat_penalty: 0.0,
        ..greedy(4)
    };
    assert_eq!(
        session.generate_with(PROMPT, &bad, |_| true).unwrap_err().status,
        Status::InvalidArgument
    );
    // Context full: nothing appended.
    let mut small = model
        .session_with(&SessionParams {
            n_ctx: 8,
            ..SessionParams::default()
        })
        .unwrap();
    assert_eq!(small.eval(&PROMPT_IDS).unwrap_err().status, Status::ContextFull);
    assert_eq!(small.n_tokens(), 0);
}

#[test]
fn a_panicking_callback_stops_generation_and_the_panic_resumes() {
    let Some(model) = load_model("a_panicking_callback_stops_generation_and_the_panic_resumes") else {
        return;
    };
    let mut session = model.session().unwrap();
    let mut calls = 0;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.generate_with(PROMPT, &greedy(64), |_| {
            calls += 1;
            if calls == 2 {
                panic!("boom in the callback");
            }
            true
        })
    }));
    let payload = caught.expect_err("the panic resumes after llm_generate returns");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the callback"));
    assert_eq!(calls, 2, "generation stopped at the panic");
    assert_eq!(session.stop_reason(), StopReason::Callback);
    assert_eq!(session.n_tokens(), PROMPT_IDS.len() + 2);
    session.generate_with("", &greedy(2), |_| true).unwrap();
}

#[test]
fn cancel_from_another_thread() {
    let Some(model) = load_model("cancel_from_another_thread") else {
        return;
    };
    let mut session = model.session().unwrap();
    let handle = session.cancel_handle();
    let (first_piece_tx, first_piece_rx) = mpsc::channel::<()>();
    let (cancelled_tx, cancelled_rx) = mpsc::channel::<()>();
    let canceller = thread::spawn(move || {
        first_piece_rx.recv().unwrap();
        handle.cancel();
        cancelled_tx.send(()).unwrap();
        handle
    });
    let mut pieces = 0;
    let err = session
        .generate_with(PROMPT, &greedy(0), |_| {
            pieces += 1;
            if pieces == 1 {
                // Let the other thread cancel while generation runs.
                first_piece_tx.send(()).unwrap();
                cancelled_rx.recv().unwrap();
            }
            true
        })
        .unwrap_err();
    assert_eq!(err.status, Status::Cancelled, "{err}");
    assert_eq!(pieces, 1);
    let handle = canceller.join().unwrap();
    // The session stays usable; the request was cleared by the next call.
    let n = session.n_tokens();
    assert!(n > PROMPT_IDS.len());
    session.generate_with("", &greedy(3), |_| true).unwrap();
    assert_eq!(session.n_tokens(), n + 3);

    // The iterator form can be cancelled too.
    session.reset().unwrap();
    let mut it = session.generate(PROMPT, &greedy(0));
    assert!(it.next().unwrap().is_ok());
    handle.cancel();
    let last = it.last().unwrap();
    assert_eq!(last.unwrap_err().status, Status::Cancelled);

    // A handle never outlives the session it refers to: afterwards it is inert.
    assert!(handle.is_alive());
    drop(session);
    assert!(!handle.is_alive());
    handle.cancel();
}

#[test]
fn sessions_on_two_threads_share_a_model() {
    let Some(model) = load_model("sessions_on_two_threads_share_a_model") else {
        return;
    };
    let Some(want) = reference_greedy_ids("sessions_on_two_threads_share_a_model") else {
        return;
    };
    let expected = expected_text(&model, &want);
    let run = |model: &Model| -> String {
        let mut session = model.session().unwrap();
        session
            .generate(PROMPT, &greedy(64))
            .collect::<libllm::Result<String>>()
            .unwrap()
    };
    // Borrowing one Model from scoped threads (Model: Sync)...
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| run(&model));
        let b = s.spawn(|| run(&model));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, expected);
    assert_eq!(b, expected);
    // ...or moving handles and sessions into 'static threads (Model: Clone + Send, Session: Send).
    let session: Session = model.session().unwrap();
    let m2 = model.clone();
    let t1 = thread::spawn(move || run(&m2));
    let t2 = thread::spawn(move || {
        let mut session = session;
        let mut text = String::new();
        session
            .generate_with(PROMPT, &greedy(64), |p| {
                text.push_str(p);
                true
            })
            .unwrap();
        text
    });
    assert_eq!(t1.join().unwrap(), expected);
    assert_eq!(t2.join().unwrap(), expected);
}

#[test]
fn a_session_keeps_its_model_alive() {
    let Some(model) = load_model("a_session_keeps_its_model_alive") else {
        return;
    };
    let mut session = model.session().unwrap();
    drop(model);
    session.eval(&PROMPT_IDS).unwrap();
    assert_eq!(session.model().vocab_size(), 32000);
    assert!(session.model().tokenize("hello", false).is_ok());
}

#[test]
fn session_info_and_memory() {
    let Some(model) = load_model("session_info_and_memory") else {
        return;
    };
    let params = SessionParams {
        n_ctx: 256,
        ..SessionParams::default()
    };
    let required = model.memory_required(&params).unwrap();
    assert!(required > 0);
    let mut session = model.session_with(&params).unwrap();
    session.eval(&PROMPT_IDS).unwrap();
    match session.info() {
        Ok(info) => {
            assert_eq!(info.n_ctx, 256);
            assert_eq!(info.n_tokens, PROMPT_IDS.len());
            assert_eq!(info.memory_bytes, required);
        }
        Err(e) if e.status == Status::Unsupported => println!("SKIP session info: {e}"),
        Err(e) => panic!("{e}"),
    }
    let too_small = SessionParams {
        memory_limit: 1024,
        ..params
    };
    assert_eq!(
        model.session_with(&too_small).unwrap_err().status,
        Status::OutOfMemory
    );

    let all = SessionParams {
        n_ctx: 64,
        logits_all: true,
        ..SessionParams::default()
    };
    let mut session = model.session_with(&all).unwrap();
    session.eval(&PROMPT_IDS).unwrap();
    assert_eq!(session.logits_at(-1).unwrap(), session.logits().unwrap());
    assert_eq!(session.logits_at(0).unwrap().len(), 32000);
}

#[test]
fn chat_template_if_supported() {
    let Some(model) = load_model("chat_template_if_supported") else {
        return;
    };
    let messages = [ChatMessage::system("Be brief."), ChatMessage::user("Hello!")];
    match model.apply_chat_template(&messages, true) {
        Ok(text) => {
            assert!(text.contains("Hello!"), "{text}");
            println!("chat template rendered: {text:?}");
        }
        // The reference model has no template (or the library lacks the function).
        Err(e) if e.status == Status::Unsupported => println!("SKIP chat template: {e}"),
        Err(e) => panic!("{e}"),
    }
    let bad = [ChatMessage::user("nul\0byte")];
    assert_eq!(
        model.apply_chat_template(&bad, true).unwrap_err().status,
        Status::InvalidArgument
    );
}

#[test]
fn a_leaked_generation_makes_session_use_panic_not_race() {
    let Some(model) = load_model("a_leaked_generation_makes_session_use_panic_not_race") else {
        return;
    };
    let mut session = model.session().unwrap();
    let mut it = session.generate(PROMPT, &greedy(64));
    assert!(it.next().is_some());
    std::mem::forget(it); // safe Rust; the worker still holds the C session
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.n_tokens()));
    assert!(
        r.is_err(),
        "using the session while the leaked worker runs must panic"
    );
    // Cancelling still works from here; the leaked worker and its C session
    // stay alive (leaked) rather than being freed under it.
    session.cancel_handle().cancel();
}
