//! The smallest streaming program in Rust: load a model, generate from a
//! prompt, print text as it arrives.
//!
//!     cargo run --example stream -- MODEL.llm [PROMPT]
//!
//! (from bindings/rust; libllm must be built, see build.rs).
use std::io::Write;
use std::process::ExitCode;

use libllm::{GenerateParams, Model};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: {} MODEL.llm [PROMPT]", args[0]);
        return ExitCode::from(2);
    }
    let prompt = args.get(2).map_or("Once upon a time", String::as_str);
    match run(&args[1], prompt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, prompt: &str) -> libllm::Result<()> {
    let model = Model::load(path)?;
    let mut session = model.session()?;
    let params = GenerateParams {
        max_tokens: 64,
        ..GenerateParams::default()
    };

    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{prompt}");
    let _ = out.flush();
    let mut pieces = session.generate(prompt, &params);
    for piece in &mut pieces {
        let _ = write!(out, "{}", piece?); // always complete UTF-8
        let _ = out.flush();
    }
    let _ = writeln!(out);
    if let Some(reason) = pieces.stop_reason() {
        eprintln!("[stopped: {reason:?}]");
    }
    Ok(())
}
