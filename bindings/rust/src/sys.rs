//! Raw declarations of the C API in `include/llm.h`, one for one.
//!
//! Everything here is `unsafe` to use and follows the header's rules
//! (ownership, `struct_size`, thread safety). The safe wrapper in the crate
//! root is built on these; use them directly only for what it lacks.
//!
//! C enums are declared as `c_int` type aliases plus constants rather than
//! Rust enums: a value the library adds later must not be undefined behaviour
//! here. `tests/header.rs` parses the header and checks that every function,
//! parameter type, struct field, enum constant and `#define`d number below
//! matches it, so this file cannot silently fall behind the header.
#![allow(non_camel_case_types)]

use std::marker::{PhantomData, PhantomPinned};
use std::os::raw::{c_char, c_int, c_void};

// ---- Versions ----------------------------------------------------------------

pub const LLM_VERSION_MAJOR: c_int = 0;
pub const LLM_VERSION_MINOR: c_int = 1;
pub const LLM_VERSION_PATCH: c_int = 0;
pub const LLM_API_VERSION: c_int = 2;

// ---- Status codes ------------------------------------------------------------

pub type llm_status = c_int;
pub const LLM_OK: llm_status = 0;
pub const LLM_ERR_INVALID_ARGUMENT: llm_status = 1;
pub const LLM_ERR_IO: llm_status = 2;
pub const LLM_ERR_FORMAT: llm_status = 3;
pub const LLM_ERR_UNSUPPORTED: llm_status = 4;
pub const LLM_ERR_OUT_OF_MEMORY: llm_status = 5;
pub const LLM_ERR_CONTEXT_FULL: llm_status = 6;
pub const LLM_ERR_BUFFER_TOO_SMALL: llm_status = 7;
pub const LLM_ERR_CANCELLED: llm_status = 8;
pub const LLM_ERR_INVALID_TOKEN: llm_status = 9;
pub const LLM_ERR_INTERNAL: llm_status = 10;

// ---- Types -------------------------------------------------------------------

pub type llm_token = i32;

/// Opaque model handle (`llm_model *`).
#[repr(C)]
pub struct llm_model {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque session handle (`llm_session *`).
#[repr(C)]
pub struct llm_session {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque KV-page pool handle (`llm_kv_pool *`).
#[repr(C)]
pub struct llm_kv_pool {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

// ---- Model -------------------------------------------------------------------

pub type llm_verify = c_int;
pub const LLM_VERIFY_FULL: llm_verify = 0;
pub const LLM_VERIFY_NONE: llm_verify = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llm_model_params {
    pub struct_size: usize,
    pub n_threads: i32,
    pub device: *const c_char,
    pub verify: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llm_model_info {
    pub struct_size: usize,
    pub architecture: *const c_char,
    pub name: *const c_char,
    pub vocab_size: i32,
    pub context_length: i32,
    pub n_layers: i32,
    pub hidden_size: i32,
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub n_params: u64,
    pub weights_bytes: u64,
    pub bos_token: llm_token,
    pub eos_token: llm_token,
    pub vocab_only: i32,
    pub decode_bytes_per_token: u64,
    pub weights_type: *const c_char,
}

// ---- Tokenizer ---------------------------------------------------------------

pub type llm_tokenize_flags = c_int;
pub const LLM_TOKENIZE_DEFAULT: llm_tokenize_flags = 0;
pub const LLM_TOKENIZE_PARSE_SPECIAL_OFF: llm_tokenize_flags = 1;

// ---- Session -----------------------------------------------------------------

pub type llm_kv_type = c_int;
pub const LLM_KV_DEFAULT: llm_kv_type = 0;
pub const LLM_KV_F32: llm_kv_type = 1;
pub const LLM_KV_F16: llm_kv_type = 2;
pub const LLM_KV_BF16: llm_kv_type = 3;
pub const LLM_KV_INT8: llm_kv_type = 4;
pub const LLM_KV_INT4: llm_kv_type = 5;

pub const LLM_KV_PAGE_TOKENS: c_int = 16;

pub type llm_context_policy = c_int;
pub const LLM_CONTEXT_STOP: llm_context_policy = 0;
pub const LLM_CONTEXT_SHIFT: llm_context_policy = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llm_session_params {
    pub struct_size: usize,
    pub n_ctx: i32,
    pub n_batch: i32,
    pub logits_all: i32,
    pub memory_limit: u64,
    pub kv_type: i32,
    pub context_policy: i32,
    pub n_keep: i32,
    pub n_discard: i32,
    pub kv_pool: *mut llm_kv_pool,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llm_kv_pool_params {
    pub struct_size: usize,
    pub kv_type: i32,
    pub n_tokens: i32,
    pub memory_limit: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llm_kv_pool_info {
    pub struct_size: usize,
    pub kv_type: i32,
    pub page_tokens: i32,
    pub n_pages: i64,
    pub pages_used: i64,
    pub pages_committed: i64,
    pub pages_shared: i64,
    pub bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llm_session_info {
    pub struct_size: usize,
    pub n_ctx: i32,
    pub n_batch: i32,
    pub n_tokens: i32,
    pub kv_bytes: u64,
    pub memory_bytes: u64,
    pub kv_type: i32,
    pub context_policy: i32,
    pub kv_bytes_per_token: u64,
    pub n_shifts: u64,
}

// ---- Generation --------------------------------------------------------------

pub type llm_stream_fn = Option<
    unsafe extern "C" fn(piece: *const c_char, len: usize, token: llm_token, user_data: *mut c_void) -> c_int,
>;

pub const LLM_MAX_STOP_STRINGS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llm_generate_params {
    pub struct_size: usize,
    pub max_tokens: i32,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: i32,
    pub seed: u64,
    pub add_special: i32,
    pub parse_special: i32,
    pub stop: [*const c_char; LLM_MAX_STOP_STRINGS],
    pub n_stop: i32,
    pub ignore_eos: i32,
}

pub type llm_stop_reason = c_int;
pub const LLM_STOP_NONE: llm_stop_reason = 0;
pub const LLM_STOP_EOS: llm_stop_reason = 1;
pub const LLM_STOP_MAX_TOKENS: llm_stop_reason = 2;
pub const LLM_STOP_STRING: llm_stop_reason = 3;
pub const LLM_STOP_CALLBACK: llm_stop_reason = 4;
pub const LLM_STOP_CONTEXT_FULL: llm_stop_reason = 5;

// ---- Chat templates ----------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct llm_chat_message {
    pub role: *const c_char,
    pub content: *const c_char,
}

// ---- Functions ---------------------------------------------------------------

extern "C" {
    pub fn llm_version() -> *const c_char;
    pub fn llm_api_version() -> c_int;

    pub fn llm_status_string(status: llm_status) -> *const c_char;
    pub fn llm_last_error() -> *const c_char;

    pub fn llm_model_params_init(params: *mut llm_model_params);
    pub fn llm_model_load(
        path: *const c_char,
        params: *const llm_model_params,
        out: *mut *mut llm_model,
    ) -> llm_status;
    pub fn llm_model_free(model: *mut llm_model);
    pub fn llm_model_get_info(model: *const llm_model, info: *mut llm_model_info) -> llm_status;
    pub fn llm_token_is_eog(model: *const llm_model, token: llm_token) -> c_int;

    pub fn llm_tokenize(
        model: *const llm_model,
        text: *const c_char,
        len: usize,
        add_special: c_int,
        out: *mut llm_token,
        capacity: usize,
        n_out: *mut usize,
    ) -> llm_status;
    pub fn llm_tokenize_ex(
        model: *const llm_model,
        text: *const c_char,
        len: usize,
        add_special: c_int,
        flags: c_int,
        out: *mut llm_token,
        capacity: usize,
        n_out: *mut usize,
    ) -> llm_status;
    pub fn llm_detokenize(
        model: *const llm_model,
        tokens: *const llm_token,
        n: usize,
        out: *mut c_char,
        capacity: usize,
        len_out: *mut usize,
    ) -> llm_status;
    pub fn llm_token_to_piece(
        model: *const llm_model,
        token: llm_token,
        out: *mut c_char,
        capacity: usize,
        len_out: *mut usize,
    ) -> llm_status;

    pub fn llm_session_params_init(params: *mut llm_session_params);
    pub fn llm_session_memory_required(
        model: *const llm_model,
        params: *const llm_session_params,
        bytes: *mut u64,
    ) -> llm_status;
    pub fn llm_session_create(
        model: *mut llm_model,
        params: *const llm_session_params,
        out: *mut *mut llm_session,
    ) -> llm_status;
    pub fn llm_kv_pool_params_init(params: *mut llm_kv_pool_params);
    pub fn llm_kv_pool_create(
        model: *mut llm_model,
        params: *const llm_kv_pool_params,
        out: *mut *mut llm_kv_pool,
    ) -> llm_status;
    pub fn llm_kv_pool_free(pool: *mut llm_kv_pool);
    pub fn llm_kv_pool_get_info(pool: *const llm_kv_pool, info: *mut llm_kv_pool_info) -> llm_status;
    pub fn llm_session_free(session: *mut llm_session);
    pub fn llm_session_reset(session: *mut llm_session) -> llm_status;
    pub fn llm_session_get_info(session: *const llm_session, info: *mut llm_session_info) -> llm_status;
    pub fn llm_session_n_tokens(session: *const llm_session, n_out: *mut usize) -> llm_status;
    pub fn llm_session_eval(session: *mut llm_session, tokens: *const llm_token, n: usize) -> llm_status;
    pub fn llm_session_truncate(session: *mut llm_session, n_tokens: usize) -> llm_status;
    pub fn llm_session_fork(
        src: *const llm_session,
        params: *const llm_session_params,
        out: *mut *mut llm_session,
    ) -> llm_status;
    pub fn llm_decode_batch(sessions: *const *mut llm_session, tokens: *const llm_token, n: usize) -> llm_status;
    pub fn llm_session_state_size(session: *const llm_session, bytes: *mut usize) -> llm_status;
    pub fn llm_session_save(
        session: *const llm_session,
        buf: *mut c_void,
        capacity: usize,
        len_out: *mut usize,
    ) -> llm_status;
    pub fn llm_session_restore(session: *mut llm_session, buf: *const c_void, len: usize) -> llm_status;
    pub fn llm_session_save_file(session: *const llm_session, path: *const c_char) -> llm_status;
    pub fn llm_session_restore_file(session: *mut llm_session, path: *const c_char) -> llm_status;
    pub fn llm_session_logits(session: *const llm_session) -> *const f32;
    pub fn llm_session_logits_at(session: *const llm_session, i: i32) -> *const f32;
    pub fn llm_session_cancel(session: *mut llm_session);

    pub fn llm_generate_params_init(params: *mut llm_generate_params);
    pub fn llm_generate(
        session: *mut llm_session,
        prompt: *const c_char,
        params: *const llm_generate_params,
        on_piece: llm_stream_fn,
        user_data: *mut c_void,
    ) -> llm_status;
    pub fn llm_session_stop_reason(session: *const llm_session) -> c_int;
    pub fn llm_session_sample(
        session: *mut llm_session,
        params: *const llm_generate_params,
        out: *mut llm_token,
    ) -> llm_status;

    pub fn llm_chat_apply_template(
        model: *const llm_model,
        messages: *const llm_chat_message,
        n: usize,
        add_generation_prompt: c_int,
        buf: *mut c_char,
        capacity: usize,
        len_out: *mut usize,
    ) -> llm_status;
}
