//! Safe Rust bindings to libllm, an on-device LLM inference runtime.
//!
//! The C API (`include/llm.h`) is the only interface; [`sys`] declares it
//! one for one, and the types here wrap it:
//!
//! * [`Model`]: a loaded model file. Read-only, `Send + Sync`; `clone()` is a
//!   cheap counted handle.
//! * [`Session`]: a context (KV cache, sampler) on a model. `Send` but not
//!   `Sync`: one thread at a time. It keeps its model alive.
//! * [`CancelHandle`]: cancels a session's running work from another thread.
//! * [`KvPool`]: KV-cache pages shared by sessions of one model (`Send + Sync`);
//!   [`Session::fork`] shares a prefix copy-on-write, [`decode_batch`]
//!   decodes one token in many sessions with one pass over the weights,
//!   [`Session::save_state`] / [`Session::restore_state`] snapshot a session.
//!   [`KvType`] and [`ContextPolicy`] are chosen in [`SessionParams`].
//! * [`Session::generate`] streams text as an iterator;
//!   [`Session::generate_with`] calls a closure (maps directly onto
//!   `llm_generate`).
//!
//! ```no_run
//! use libllm::{GenerateParams, Model};
//!
//! let model = Model::load("model.llm")?;
//! let mut session = model.session()?;
//! let params = GenerateParams { max_tokens: 64, ..GenerateParams::default() };
//! for piece in session.generate("Once upon a time", &params) {
//!     print!("{}", piece?);
//! }
//! # Ok::<(), libllm::Error>(())
//! ```
//!
//! Linking: `build.rs` links the shared `libllm` from `LIBLLM_LIB_DIR` (a
//! relative path is taken from the repository root) or `../../build`.

pub mod sys;

mod error;
mod kv;
mod model;
mod session;

pub use error::{Error, Result, Status};
pub use kv::{ContextPolicy, KvPool, KvPoolInfo, KvPoolParams, KvType};
pub use model::{ChatMessage, Model, ModelInfo, ModelParams, Verify};
pub use session::{
    decode_batch, CancelHandle, GenerateParams, Generation, Session, SessionInfo, SessionParams,
    StopReason,
};

/// A token id.
pub type Token = sys::llm_token;

/// `"MAJOR.MINOR.PATCH"` of the library actually loaded.
pub fn version() -> &'static str {
    // SAFETY: a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(sys::llm_version()) }
        .to_str()
        .unwrap_or("")
}

/// `LLM_API_VERSION` of the library actually loaded (compare with
/// [`sys::LLM_API_VERSION`], the header these bindings were written for).
pub fn api_version() -> i32 {
    // SAFETY: no arguments, no state.
    unsafe { sys::llm_api_version() }
}

// Thread-safety as the C API allows it, checked at compile time:
// Model: Send + Sync, Session: Send and not Sync, CancelHandle: Send + Sync.
const _: () = {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    #[allow(dead_code)]
    fn check() {
        send_sync::<Model>();
        send_sync::<KvPool>();
        send::<Session>();
        send_sync::<CancelHandle>();
        send::<Generation<'static>>();
    }
};

// `Session: !Sync`: this fails to compile (ambiguous impl) if Session were Sync.
const _: fn() = || {
    trait AmbiguousIfSync<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    #[allow(dead_code)]
    struct Invalid;
    impl<T: ?Sized + Sync> AmbiguousIfSync<Invalid> for T {}
    let _ = <Session as AmbiguousIfSync<_>>::some_item;
};
