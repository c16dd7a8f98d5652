//! Links the crate against the shared libllm.
//!
//! Library directory: `LIBLLM_LIB_DIR` if set (a relative path is taken from
//! the repository root, two levels above this crate, so `LIBLLM_LIB_DIR=build`
//! means the CMake build directory of this checkout), else `../../build`
//! relative to the crate. An rpath to that directory is added to this
//! package's tests, examples and binaries so they run without
//! `LD_LIBRARY_PATH`; crates depending on this one choose their own.
//!
//! Functions that are declared in the header but may be missing from the
//! library being linked (being implemented while the header is already
//! published) are probed by linking a one-line program against it; the
//! wrapper reports `Status::Unsupported` for those the library lacks instead
//! of failing to link.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// (C function, cfg set when the library exports it)
const OPTIONAL_FUNCTIONS: &[(&str, &str)] = &[
    ("llm_chat_apply_template", "llm_has_chat_template"),
    ("llm_session_get_info", "llm_has_session_info"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBLLM_LIB_DIR");
    for (_, cfg) in OPTIONAL_FUNCTIONS {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
    }

    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let repo_root = manifest.join("../..");
    let dir = match env::var_os("LIBLLM_LIB_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_root.join(d)
            }
        }
        _ => repo_root.join("build"),
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();

    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=llm");
    if target_os != "windows" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    // For crates that depend on this one (`links = "llm"`): DEP_LLM_LIB_DIR.
    println!("cargo:lib_dir={}", dir.display());

    let lib_file = dir.join(match target_os.as_str() {
        "macos" | "ios" => "libllm.dylib",
        "windows" => "llm.lib",
        _ => "libllm.so",
    });
    // Re-probe (and relink) when the library is rebuilt.
    println!("cargo:rerun-if-changed={}", lib_file.display());
    if !lib_file.exists() {
        println!(
            "cargo:warning=libllm not found at {}: build it (cmake -S . -B build && cmake --build build) \
             or set LIBLLM_LIB_DIR",
            lib_file.display()
        );
        return;
    }
    for (function, cfg) in OPTIONAL_FUNCTIONS {
        if links(&dir, function) {
            println!("cargo:rustc-cfg={cfg}");
        } else {
            println!(
                "cargo:warning={} does not export {function}: the wrapper reports Status::Unsupported for it",
                lib_file.display()
            );
        }
    }
}

/// Whether a program calling `function` links against libllm in `dir`.
fn links(dir: &Path, function: &str) -> bool {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let src = out.join(format!("probe_{function}.rs"));
    let exe = out.join(format!("probe_{function}"));
    let program = format!("extern \"C\" {{ fn {function}(); }}\nfn main() {{ unsafe {{ {function}() }} }}\n");
    if fs::write(&src, program).is_err() {
        return false;
    }
    let mut cmd = Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    cmd.args([
        "--edition=2021",
        "--crate-type=bin",
        "-C",
        "opt-level=0",
        "-C",
        "debuginfo=0",
    ])
    .arg("-o")
    .arg(&exe)
    .arg("-L")
    .arg(format!("native={}", dir.display()))
    .args(["-l", "dylib=llm"])
    .arg(&src)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Ok(target) = env::var("TARGET") {
        cmd.arg("--target").arg(target);
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        cmd.arg(format!("-Clinker={linker}"));
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    let _ = fs::remove_file(&exe);
    ok
}
