//! API version 2 through the safe wrapper, on the reference model
//! (tiny-llama-code, bf16): KV cache types, context shift, truncation, forks,
//! shared KV pools, batched decode and session state. See
//! tests/unit/kv_session_test.cpp for the C semantics.
//!
//! Model file: `LIBLLM_TEST_MODEL`, else `tests/work/tiny-llama-code-bf16.llm`
//! under the library directory (as in tests/model.rs); tests print a message
//! and pass when it is absent.
use std::path::{Path, PathBuf};
use std::thread;

use libllm::{
    decode_batch, ContextPolicy, GenerateParams, KvPool, KvPoolParams, KvType, Model, Session, SessionParams,
    Status, StopReason, Token,
};

const PROMPT_IDS: [Token; 12] = [1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 1058];
// The first 16 greedy_ids of case 0 of reference.json (after PROMPT_IDS).
const GREEDY16: [Token; 16] = [
    750, 1063, 16246, 297, 263, 2319, 8034, 29889, 2296, 750, 1063, 16246, 297, 263, 2319, 8034,
];

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LIBLLM_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib_dir = match std::env::var_os("LIBLLM_LIB_DIR") {
        Some(d) if !d.is_empty() => root.join(d),
        _ => root.join("build"),
    };
    lib_dir.join("tests/work/tiny-llama-code-bf16.llm")
}

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

/// n ordinary token ids (no BOS/EOS), different per seed.
fn ids(n: usize, seed: usize) -> Vec<Token> {
    (0..n)
        .map(|i| 100 + ((i * 37 + 11 + seed * 101) % 20000) as Token)
        .collect()
}

fn params(n_ctx: i32, kv_type: KvType) -> SessionParams {
    SessionParams {
        n_ctx,
        kv_type,
        ..SessionParams::default()
    }
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let mut diff = 0f64;
    let mut scale = 0f64;
    for (x, y) in a.iter().zip(b) {
        diff = diff.max((*x as f64 - *y as f64).abs());
        scale = scale.max((*y as f64).abs());
    }
    diff / scale
}

fn fresh_logits(model: &Model, tokens: &[Token], kv: KvType) -> Vec<f32> {
    let mut s = model.session_with(&params(256, kv)).unwrap();
    s.eval(tokens).unwrap();
    s.logits().unwrap().to_vec()
}

fn greedy(max_tokens: i32) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ignore_eos: true,
        ..GenerateParams::greedy()
    }
}

fn argmax(v: &[f32]) -> Token {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as Token
}

#[test]
fn kv_type_and_policy_parse_and_print() {
    assert_eq!("int8".parse::<KvType>().unwrap(), KvType::Int8);
    assert_eq!(" BF16 ".parse::<KvType>().unwrap(), KvType::Bf16);
    assert_eq!("default".parse::<KvType>().unwrap(), KvType::Default);
    assert_eq!(
        "int3".parse::<KvType>().unwrap_err().status,
        Status::InvalidArgument
    );
    assert_eq!(KvType::Int4.to_string(), "int4");
    assert_eq!(KvType::from_raw(libllm::sys::LLM_KV_F32), KvType::F32);
    assert_eq!(KvType::from_raw(99), KvType::Unknown(99));
    assert_eq!(KvType::Unknown(99).to_raw(), 99);
    assert_eq!("shift".parse::<ContextPolicy>().unwrap(), ContextPolicy::Shift);
    assert_eq!(ContextPolicy::Stop.to_string(), "stop");
    assert!("rotate".parse::<ContextPolicy>().is_err());
    let d = SessionParams::default();
    assert_eq!(
        (d.kv_type, d.context_policy, d.n_keep, d.n_discard),
        (KvType::Default, ContextPolicy::Stop, 0, 0)
    );
    assert!(d.kv_pool.is_none());
    let p = KvPoolParams::new(64);
    assert_eq!((p.kv_type, p.n_tokens, p.memory_limit), (KvType::Default, 64, 0));
}

#[test]
fn kv_type_sizes_follow_the_header() {
    let Some(model) = load_model("kv_type_sizes_follow_the_header") else {
        return;
    };
    let mi = model.info().unwrap();
    let (hd, per_layer) = ((mi.hidden_size / mi.n_heads) as u64, 2 * mi.n_kv_heads as u64);
    let n_layers = mi.n_layers as u64;
    for (kv, want, per_token) in [
        (KvType::F32, KvType::F32, 4 * per_layer * hd),
        (KvType::F16, KvType::F16, 2 * per_layer * hd),
        (KvType::Default, KvType::F16, 2 * per_layer * hd),
        (KvType::Bf16, KvType::Bf16, 2 * per_layer * hd),
        (KvType::Int8, KvType::Int8, per_layer * (hd + 2)),
        (KvType::Int4, KvType::Int4, per_layer * (hd / 2 + hd / 16)),
    ] {
        let p = params(100, kv);
        let s = model.session_with(&p).unwrap();
        let info = s.info().unwrap();
        assert_eq!(info.kv_type, want);
        assert_eq!(info.context_policy, ContextPolicy::Stop);
        assert_eq!(info.kv_bytes_per_token, per_token * n_layers, "{kv}");
        assert_eq!(info.kv_bytes, per_token * n_layers * 112, "{kv}"); // 7 pages of 16
        assert_eq!(info.n_shifts, 0);
        assert_eq!(model.memory_required(&p).unwrap(), info.memory_bytes);
        assert_eq!(s.params(), &p);
    }
    let bad = params(100, KvType::Unknown(42));
    assert_eq!(
        model.session_with(&bad).unwrap_err().status,
        Status::InvalidArgument
    );
    let bad = SessionParams {
        context_policy: ContextPolicy::Unknown(7),
        ..params(100, KvType::F16)
    };
    assert_eq!(
        model.session_with(&bad).unwrap_err().status,
        Status::InvalidArgument
    );
}

#[test]
fn context_shift_keeps_generating() {
    let Some(model) = load_model("context_shift_keeps_generating") else {
        return;
    };
    let p = SessionParams {
        context_policy: ContextPolicy::Shift,
        n_keep: 4,
        ..params(64, KvType::Int8)
    };
    let mut s = model.session_with(&p).unwrap();
    s.eval(&ids(60, 1)).unwrap();
    let reason = s.generate_with("", &greedy(150), |_| true).unwrap();
    assert_eq!(reason, StopReason::MaxTokens);
    let info = s.info().unwrap();
    assert_eq!(info.context_policy, ContextPolicy::Shift);
    assert!(info.n_shifts >= 3, "{info:?}");
    assert!(info.n_tokens <= 64);
    assert_eq!(s.eval(&ids(70, 2)).unwrap_err().status, Status::ContextFull);

    let p = SessionParams {
        context_policy: ContextPolicy::Shift,
        n_keep: 1,
        n_discard: 8,
        ..params(64, KvType::F16)
    };
    let mut s = model.session_with(&p).unwrap();
    s.eval(&ids(64, 3)).unwrap();
    s.eval(&[500]).unwrap();
    assert_eq!(s.info().unwrap().n_shifts, 1);
    assert_eq!(s.n_tokens(), 64 - 8 + 1);

    let mut stop = model.session_with(&params(32, KvType::F16)).unwrap();
    stop.eval(&ids(30, 5)).unwrap();
    let reason = stop.generate_with("", &greedy(10), |_| true).unwrap();
    assert_eq!(reason, StopReason::ContextFull);
}

#[test]
fn truncate_then_continue_matches_a_fresh_session() {
    let Some(model) = load_model("truncate_then_continue_matches_a_fresh_session") else {
        return;
    };
    let (a, b) = (ids(40, 1), ids(30, 2));
    let mut s = model.session_with(&params(128, KvType::F32)).unwrap();
    s.eval(&a).unwrap();
    s.truncate(25).unwrap();
    assert_eq!(s.n_tokens(), 25);
    assert!(s.logits().is_none());
    s.eval(&b).unwrap();
    let joined: Vec<Token> = a[..25].iter().chain(&b).copied().collect();
    assert!(rel_diff(s.logits().unwrap(), &fresh_logits(&model, &joined, KvType::F32)) < 1e-4);
    let e = s.truncate(1000).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("1000"), "{e}");
    assert_eq!(s.n_tokens(), 55);

    // Regenerating after a truncation gives the reference again.
    let mut s = model.session_with(&params(256, KvType::F16)).unwrap();
    s.eval(&PROMPT_IDS).unwrap();
    let mut first = Vec::new();
    s.generate_with_tokens("", &greedy(16), |_, t| {
        first.extend(t);
        true
    })
    .unwrap();
    assert_eq!(first, GREEDY16);
    s.truncate(PROMPT_IDS.len()).unwrap();
    let again: String = s.generate("", &greedy(16)).map(|p| p.unwrap()).collect();
    assert_eq!(
        again,
        model.detokenize(&[&PROMPT_IDS[..], &GREEDY16].concat()).unwrap()
            [model.detokenize(&PROMPT_IDS).unwrap().len()..]
    );
}

#[test]
fn fork_copies_the_context_and_continues_independently() {
    let Some(model) = load_model("fork_copies_the_context_and_continues_independently") else {
        return;
    };
    let system = ids(40, 3);
    let mut a = model.session_with(&params(128, KvType::F32)).unwrap();
    a.eval(&system).unwrap();
    let mut b = a.fork().unwrap();
    let mut c = a
        .fork_with(&SessionParams {
            n_ctx: 96,
            kv_type: KvType::Default, // = the source's type in a fork
            ..a.params().clone()
        })
        .unwrap();
    assert_eq!(b.n_tokens(), 40);
    assert_eq!(b.params(), a.params());
    assert_eq!(c.info().unwrap().n_ctx, 96);
    assert_eq!(c.info().unwrap().kv_type, KvType::F32);
    assert_eq!(b.logits().unwrap(), a.logits().unwrap());
    let (ta, tb, tc) = (ids(20, 6), ids(30, 4), ids(25, 5));
    a.eval(&ta).unwrap();
    b.eval(&tb).unwrap();
    c.eval(&tc).unwrap();
    for (s, t) in [(&a, &ta), (&b, &tb), (&c, &tc)] {
        let joined: Vec<Token> = system.iter().chain(t.iter()).copied().collect();
        assert!(rel_diff(s.logits().unwrap(), &fresh_logits(&model, &joined, KvType::F32)) < 1e-4);
    }
    // A copied cache must keep the source's type.
    let e = a.fork_with(&params(128, KvType::Int8)).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    // A fork can move to another thread and outlive its source.
    drop(a);
    let handle = thread::spawn(move || {
        b.eval(&[500]).unwrap();
        b.n_tokens()
    });
    assert_eq!(handle.join().unwrap(), 71);
}

#[test]
fn forks_share_pool_pages_copy_on_write() {
    let Some(model) = load_model("forks_share_pool_pages_copy_on_write") else {
        return;
    };
    let pool = model.kv_pool(512, KvType::F32).unwrap();
    let info = pool.info().unwrap();
    assert_eq!(
        (info.kv_type, info.page_tokens, info.n_pages),
        (KvType::F32, 16, 32)
    );
    assert_eq!(
        (info.pages_used, info.pages_committed, info.pages_shared),
        (0, 0, 0)
    );
    assert_eq!(info.pages_free(), 32);
    assert!(info.bytes > 0);
    assert_eq!(pool.model().as_raw(), model.as_raw());

    let system = ids(40, 3);
    let mut a = pool.session_with(&SessionParams::with_n_ctx(128)).unwrap();
    assert_eq!(a.kv_pool(), Some(&pool));
    assert_eq!(a.info().unwrap().kv_bytes, 0);
    assert_eq!(a.info().unwrap().kv_type, KvType::F32);
    a.eval(&system).unwrap();
    assert_eq!(pool.info().unwrap().pages_used, 3);
    let mut b = a.fork().unwrap();
    let c = a.fork_with(a.params()).unwrap();
    assert_eq!(b.kv_pool(), Some(&pool));
    let info = pool.info().unwrap();
    assert_eq!((info.pages_shared, info.pages_used), (2, 5));
    {
        let own = a
            .fork_with(&SessionParams {
                kv_pool: None,
                ..a.params().clone()
            })
            .unwrap();
        assert!(own.kv_pool().is_none());
        assert!(own.info().unwrap().kv_bytes > 0);
        assert_eq!(own.logits().unwrap(), a.logits().unwrap());
    }
    let (ta, tb) = (ids(20, 6), ids(30, 4));
    b.eval(&tb).unwrap();
    b.truncate(20).unwrap(); // into the shared prefix: copied before writing
    b.eval(&tb[..10]).unwrap();
    a.eval(&ta).unwrap();
    let ja: Vec<Token> = system.iter().chain(&ta).copied().collect();
    let jb: Vec<Token> = system[..20].iter().chain(&tb[..10]).copied().collect();
    assert!(rel_diff(a.logits().unwrap(), &fresh_logits(&model, &ja, KvType::F32)) < 1e-4);
    assert!(rel_diff(b.logits().unwrap(), &fresh_logits(&model, &jb, KvType::F32)) < 1e-4);
    drop((a, b, c));
    let info = pool.info().unwrap();
    assert_eq!((info.pages_used, info.pages_committed), (0, 0));

    // A pool of another model (a second load of the file) is refused.
    let other = Model::load(model_path()).unwrap();
    let other_pool = other.kv_pool(64, KvType::F16).unwrap();
    let p = SessionParams {
        kv_pool: Some(other_pool),
        ..SessionParams::with_n_ctx(32)
    };
    let e = model.session_with(&p).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("another model"), "{e}");
}

#[test]
fn pool_commitments_are_never_overdrawn() {
    let Some(model) = load_model("pool_commitments_are_never_overdrawn") else {
        return;
    };
    let pool = KvPool::new(
        &model,
        &KvPoolParams {
            kv_type: KvType::F32,
            ..KvPoolParams::new(96)
        },
    )
    .unwrap(); // 6 pages
    let mut a = pool.session_with(&SessionParams::with_n_ctx(64)).unwrap();
    a.eval(&ids(32, 7)).unwrap();
    let p48 = SessionParams {
        n_ctx: 48,
        ..a.params().clone()
    };
    let mut b = a.fork_with(&p48).unwrap();
    let mut c = a.fork_with(&p48).unwrap();
    let e = a.fork_with(&p48).unwrap_err();
    assert_eq!(e.status, Status::OutOfMemory);
    assert!(e.message.contains("pages"), "{e}");
    assert_eq!(
        pool.session_with(&SessionParams::with_n_ctx(32))
            .unwrap_err()
            .status,
        Status::OutOfMemory
    );
    b.eval(&ids(16, 8)).unwrap();
    c.eval(&ids(16, 8)).unwrap();
    assert_eq!(c.eval(&[5]).unwrap_err().status, Status::ContextFull);
    assert_eq!(b.truncate(20).unwrap_err().status, Status::OutOfMemory);
    assert_eq!(b.n_tokens(), 48);
    drop(c);
    b.truncate(20).unwrap();
    b.eval(&ids(16, 8)).unwrap();
    drop((a, b));
    let info = pool.info().unwrap();
    assert_eq!(info.pages_used + info.pages_committed, 0);

    let e = KvPool::new(
        &model,
        &KvPoolParams {
            memory_limit: 1000,
            ..KvPoolParams::new(1000)
        },
    )
    .unwrap_err();
    assert_eq!(e.status, Status::OutOfMemory);
    assert_eq!(
        KvPool::new(&model, &KvPoolParams::new(0)).unwrap_err().status,
        Status::InvalidArgument
    );
}

#[test]
fn pool_lifetime_and_threads() {
    let Some(model) = load_model("pool_lifetime_and_threads") else {
        return;
    };
    let pool = model.kv_pool(16 * 64, KvType::Int8).unwrap();
    // Sessions on the pool keep its memory after the last handle is dropped,
    // and the pool keeps its model.
    let mut s = pool
        .session_with(&SessionParams {
            kv_type: KvType::F32, // ignored: the pool's type
            ..SessionParams::with_n_ctx(64)
        })
        .unwrap();
    assert_eq!(s.info().unwrap().kv_type, KvType::Int8);
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let pool = pool.clone();
            thread::spawn(move || {
                for _ in 0..3 {
                    let mut t = pool.session_with(&SessionParams::with_n_ctx(64)).unwrap();
                    t.eval(&ids(20, i)).unwrap();
                    pool.info().unwrap();
                    let mut f = t.fork().unwrap();
                    f.eval(&ids(5, i + 1)).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(pool.info().unwrap().pages_used, 0);
    drop(pool);
    drop(model);
    s.eval(&ids(20, 9)).unwrap();
    let mut f = s.fork().unwrap();
    f.eval(&[5]).unwrap();
    assert_eq!(f.n_tokens(), 21);
}

#[test]
fn decode_batch_matches_the_reference_and_sessions_run_alone() {
    let Some(model) = load_model("decode_batch_matches_the_reference_and_sessions_run_alone") else {
        return;
    };
    for kv in [KvType::F16, KvType::Int4] {
        let mut batch: Vec<Session> = (0..4)
            .map(|_| model.session_with(&params(128, kv)).unwrap())
            .collect();
        let mut alone: Vec<Session> = (0..4)
            .map(|_| model.session_with(&params(128, kv)).unwrap())
            .collect();
        batch[0].eval(&PROMPT_IDS).unwrap();
        alone[0].eval(&PROMPT_IDS).unwrap();
        for i in 1..4 {
            let t = ids(10 + 7 * i, 20 + i);
            batch[i].eval(&t).unwrap();
            alone[i].eval(&t).unwrap();
        }
        let mut got0 = Vec::new();
        for step in 0..8 {
            let mut next: Vec<Token> = (0..4).map(|i| 100 + (step * 31 + i * 17) as Token).collect();
            next[0] = argmax(batch[0].logits().unwrap()); // session 0 decodes greedily
            got0.push(next[0]);
            decode_batch(&mut batch, &next).unwrap(); // &mut [Session]
            for i in 0..4 {
                alone[i].eval(&next[i..i + 1]).unwrap();
                let d = rel_diff(batch[i].logits().unwrap(), alone[i].logits().unwrap());
                assert!(d < 1e-3, "{kv} session {i}: {d}");
            }
        }
        if kv == KvType::F16 {
            assert_eq!(got0, GREEDY16[..8]);
        }
    }
    // &mut [&mut Session] and Model::decode_batch.
    let mut a = model.session_with(&params(32, KvType::F16)).unwrap();
    let mut b = model.session_with(&params(32, KvType::F16)).unwrap();
    a.eval(&ids(5, 1)).unwrap();
    b.eval(&ids(6, 2)).unwrap();
    model.decode_batch(&mut [&mut a, &mut b], &[5, 6]).unwrap();
    assert_eq!((a.n_tokens(), b.n_tokens()), (6, 7));
    decode_batch::<Session>(&mut [], &[]).unwrap();
}

#[test]
fn decode_batch_misuse_is_refused_before_evaluating() {
    let Some(model) = load_model("decode_batch_misuse_is_refused_before_evaluating") else {
        return;
    };
    let mut a = model.session_with(&params(32, KvType::F16)).unwrap();
    let mut b = model.session_with(&params(32, KvType::F16)).unwrap();
    a.eval(&ids(5, 1)).unwrap();
    b.eval(&ids(6, 2)).unwrap();
    let e = decode_batch(&mut [&mut a, &mut b], &[5]).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("2 sessions but 1 tokens"), "{e}");
    let e = decode_batch(&mut [&mut a, &mut b], &[5, 1_000_000]).unwrap_err();
    assert_eq!(e.status, Status::InvalidToken);
    assert_eq!((a.n_tokens(), b.n_tokens()), (5, 6));
    // More sessions than the first one's n_batch.
    let mut small = model
        .session_with(&SessionParams {
            n_batch: 1,
            ..params(32, KvType::F16)
        })
        .unwrap();
    let e = decode_batch(&mut [&mut small, &mut a], &[5, 6]).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("n_batch"), "{e}");
    // A full context; one under Shift is shifted instead.
    let mut full = model.session_with(&params(16, KvType::F16)).unwrap();
    full.eval(&ids(16, 3)).unwrap();
    assert_eq!(
        decode_batch(&mut [&mut a, &mut full], &[5, 6])
            .unwrap_err()
            .status,
        Status::ContextFull
    );
    assert_eq!(a.n_tokens(), 5);
    let mut shifting = model
        .session_with(&SessionParams {
            context_policy: ContextPolicy::Shift,
            ..params(16, KvType::F16)
        })
        .unwrap();
    shifting.eval(&ids(16, 3)).unwrap();
    decode_batch(&mut [&mut shifting, &mut a], &[5, 6]).unwrap();
    assert_eq!(shifting.info().unwrap().n_shifts, 1);
    // Sessions of another model.
    let other = Model::load(model_path()).unwrap();
    let mut o = other.session_with(&params(32, KvType::F16)).unwrap();
    let e = model.decode_batch(&mut [&mut a, &mut o], &[5, 6]).unwrap_err();
    assert!(e.message.contains("not a session of this model"), "{e}");
    let e = decode_batch(&mut [&mut a, &mut o], &[5, 6]).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("one model"), "{e}");
}

#[test]
fn save_restore_round_trips_and_rejects_bad_states() {
    let Some(model) = load_model("save_restore_round_trips_and_rejects_bad_states") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("libllm-rust-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for kv in [KvType::F16, KvType::Int4] {
        let mut s = model.session_with(&params(128, kv)).unwrap();
        s.eval(&ids(45, 11)).unwrap();
        let state = s.save_state().unwrap();
        assert_eq!(state.len(), s.state_size().unwrap());
        let mut r = model.session_with(&params(128, kv)).unwrap();
        r.restore_state(&state).unwrap();
        assert_eq!(r.n_tokens(), 45);
        assert_eq!(r.logits().unwrap(), s.logits().unwrap());
        let u = ids(5, 12);
        s.eval(&u).unwrap();
        r.eval(&u).unwrap();
        assert_eq!(r.logits().unwrap(), s.logits().unwrap());

        let mut bad = state.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x10;
        let e = r.restore_state(&bad).unwrap_err();
        assert_eq!(e.status, Status::Format);
        assert!(e.message.contains("checksum"), "{e}");
        assert_eq!(
            r.restore_state(&state[..state.len() - 1]).unwrap_err().status,
            Status::Format
        );
        assert_eq!(r.restore_state(&[]).unwrap_err().status, Status::Format);
        assert_eq!(r.n_tokens(), 50);
        let other_kv = if kv == KvType::F16 {
            KvType::Int8
        } else {
            KvType::F16
        };
        let mut o = model.session_with(&params(128, other_kv)).unwrap();
        assert_eq!(
            o.restore_state(&state).unwrap_err().status,
            Status::InvalidArgument
        );
        let mut small = model.session_with(&params(32, kv)).unwrap();
        assert_eq!(
            small.restore_state(&state).unwrap_err().status,
            Status::ContextFull
        );

        let file = dir.join(format!("state-{kv}.bin"));
        s.save_state_file(&file).unwrap();
        assert!(file.is_file());
        assert_eq!(
            small.restore_state_file(&file).unwrap_err().status,
            Status::ContextFull
        );
        let mut f = model.session_with(&params(128, kv)).unwrap();
        f.restore_state_file(&file).unwrap();
        assert_eq!(f.logits().unwrap(), s.logits().unwrap());
        assert_eq!(
            f.restore_state_file(dir.join("missing.bin")).unwrap_err().status,
            Status::Io
        );
        assert_eq!(
            f.restore_state_file("").unwrap_err().status,
            Status::InvalidArgument
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    // A restored state generates what the original would have.
    let mut s = model.session_with(&params(256, KvType::F16)).unwrap();
    s.eval(&PROMPT_IDS).unwrap();
    let state = s.save_state().unwrap();
    let mut fresh = model.session_with(&params(256, KvType::F16)).unwrap();
    fresh.restore_state(&state).unwrap();
    let mut got = Vec::new();
    fresh
        .generate_with_tokens("", &greedy(16), |_, t| {
            got.extend(t);
            true
        })
        .unwrap();
    assert_eq!(got, GREEDY16);
}
