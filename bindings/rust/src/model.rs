use std::ffi::{CStr, CString};
use std::mem::{offset_of, size_of, MaybeUninit};
use std::os::raw::{c_char, c_int};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::error::{check, Error, Result, Status};
use crate::kv::{KvPool, KvPoolParams, KvType};
use crate::session::{Session, SessionParams};
use crate::sys;
use crate::Token;

/// How much of the file [`Model::load_with`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Verify {
    /// Check every tensor checksum at load (the default).
    #[default]
    Full,
    /// Structure only; fastest load.
    None,
}

/// Options of [`Model::load_with`]. `Default` takes the library's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelParams {
    /// Worker threads for the CPU backend; 0 = number of online cores.
    pub n_threads: i32,
    /// Compute device: `None` or `Some("cpu")`.
    pub device: Option<String>,
    pub verify: Verify,
}

impl Default for ModelParams {
    fn default() -> Self {
        let mut p = MaybeUninit::<sys::llm_model_params>::zeroed();
        // SAFETY: llm_model_params_init fills the whole struct.
        let p = unsafe {
            sys::llm_model_params_init(p.as_mut_ptr());
            p.assume_init()
        };
        ModelParams {
            n_threads: p.n_threads,
            device: None,
            verify: if p.verify == sys::LLM_VERIFY_NONE {
                Verify::None
            } else {
                Verify::Full
            },
        }
    }
}

/// What [`Model::info`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// `"llama"`, `"qwen2"`, ...
    pub architecture: String,
    /// Model name from the file.
    pub name: String,
    pub vocab_size: usize,
    /// Maximum positions the model was trained for.
    pub context_length: usize,
    pub n_layers: usize,
    pub hidden_size: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Parameter count of the original checkpoint.
    pub n_params: u64,
    /// Bytes of tensor data in the file.
    pub weights_bytes: u64,
    pub bos_token: Option<Token>,
    /// First end-of-sequence token.
    pub eos_token: Option<Token>,
    /// The file has no weights (tokenizer only).
    pub vocab_only: bool,
    /// Weight bytes read to decode one token (`None` from a library older than this field).
    pub decode_bytes_per_token: Option<u64>,
    /// Storage of most weight bytes: `"f32"`, `"bf16"`, `"int4"`, ... (`None` from an older library).
    pub weights_type: Option<String>,
}

/// One message of a chat for [`Model::apply_chat_template`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    /// `"system"`, `"user"`, `"assistant"`, ...
    pub role: &'a str,
    pub content: &'a str,
}

impl<'a> ChatMessage<'a> {
    pub fn new(role: &'a str, content: &'a str) -> Self {
        ChatMessage { role, content }
    }
    pub fn system(content: &'a str) -> Self {
        ChatMessage {
            role: "system",
            content,
        }
    }
    pub fn user(content: &'a str) -> Self {
        ChatMessage {
            role: "user",
            content,
        }
    }
    pub fn assistant(content: &'a str) -> Self {
        ChatMessage {
            role: "assistant",
            content,
        }
    }
}

pub(crate) struct ModelInner {
    raw: NonNull<sys::llm_model>,
    vocab_size: usize,
}

// SAFETY: llm.h: "a model is read-only after loading and may be shared by any
// number of threads and sessions"; freeing it needs only that no session uses
// it any more, which the Arc held by every session guarantees.
unsafe impl Send for ModelInner {}
unsafe impl Sync for ModelInner {}

impl Drop for ModelInner {
    fn drop(&mut self) {
        // SAFETY: the last reference is gone, so every session (each holds
        // one) has been freed first, as llm_model_free requires.
        unsafe { sys::llm_model_free(self.raw.as_ptr()) }
    }
}

/// A loaded model: read-only and shareable (`Send + Sync`).
///
/// `Model` is a counted handle: `clone()` is cheap and gives another handle to
/// the same loaded model, which is freed when the last handle and the last
/// [`Session`] created from it are gone. So sessions never outlive their
/// model, even when leaked, and can be moved into `std::thread::spawn`.
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("raw", &self.inner.raw).finish()
    }
}

pub(crate) fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))
}

/// Calls a C function following the header's buffer rules (capacity in,
/// required size out, `LLM_ERR_BUFFER_TOO_SMALL` when short) until the
/// buffer is big enough.
pub(crate) fn fill_buffer<T: Copy + Default>(
    initial: usize,
    mut call: impl FnMut(*mut T, usize, &mut usize) -> c_int,
) -> Result<Vec<T>> {
    let mut buf = vec![T::default(); initial.max(1)];
    for _ in 0..4 {
        let mut n = 0usize;
        let st = call(buf.as_mut_ptr(), buf.len(), &mut n);
        if st == sys::LLM_OK {
            buf.truncate(n.min(buf.len()));
            return Ok(buf);
        }
        if st == sys::LLM_ERR_BUFFER_TOO_SMALL && n > buf.len() {
            buf.resize(n, T::default());
            continue;
        }
        return Err(Error::last(st));
    }
    Err(Error::new(
        Status::Internal,
        "the required buffer size kept changing",
    ))
}

fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

unsafe fn opt_str(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

impl Model {
    /// Load a model file with the default options.
    ///
    /// Errors: `Io` (the message names the path), `Format`, `Unsupported`, `OutOfMemory`.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &ModelParams::default())
    }

    /// Load a model file.
    pub fn load_with(path: impl AsRef<Path>, params: &ModelParams) -> Result<Model> {
        let path = path.as_ref();
        let c_path = path_to_c(path)?;
        let device = params
            .device
            .as_deref()
            .map(|d| c_string("device", d))
            .transpose()?;
        let mut p = MaybeUninit::<sys::llm_model_params>::zeroed();
        // SAFETY: init fills the struct; the strings outlive the call.
        let mut raw: *mut sys::llm_model = ptr::null_mut();
        let st = unsafe {
            sys::llm_model_params_init(p.as_mut_ptr());
            let mut p = p.assume_init();
            p.n_threads = params.n_threads;
            p.device = device.as_ref().map_or(ptr::null(), |d| d.as_ptr());
            p.verify = match params.verify {
                Verify::Full => sys::LLM_VERIFY_FULL,
                Verify::None => sys::LLM_VERIFY_NONE,
            };
            sys::llm_model_load(c_path.as_ptr(), &p, &mut raw)
        };
        check(st)?;
        let raw =
            NonNull::new(raw).ok_or_else(|| Error::new(Status::Internal, "llm_model_load gave NULL"))?;
        // Take ownership at once so an error below still frees the model.
        let mut inner = ModelInner { raw, vocab_size: 0 };
        let model_info = raw_info(raw.as_ptr())?;
        inner.vocab_size = usize::try_from(model_info.vocab_size).unwrap_or(0);
        Ok(Model {
            inner: Arc::new(inner),
        })
    }

    /// The raw handle, for calls into [`sys`](crate::sys). Valid while this
    /// `Model` (or a clone, or a session of it) lives.
    pub fn as_raw(&self) -> *mut sys::llm_model {
        self.inner.raw.as_ptr()
    }

    /// Number of tokens in the vocabulary (= length of a logits row).
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size
    }

    /// Architecture, sizes and special tokens of the model.
    pub fn info(&self) -> Result<ModelInfo> {
        let i = raw_info(self.as_raw())?;
        // Fields after the first published layout are present only if the
        // library wrote them (it reports how many bytes it filled).
        let has = |end: usize| i.struct_size >= end;
        let token = |t: Token| if t >= 0 { Some(t) } else { None };
        let count = |v: i32| usize::try_from(v).unwrap_or(0);
        // SAFETY: the strings are owned by the model, alive while self is.
        unsafe {
            Ok(ModelInfo {
                architecture: opt_str(i.architecture),
                name: opt_str(i.name),
                vocab_size: count(i.vocab_size),
                context_length: count(i.context_length),
                n_layers: count(i.n_layers),
                hidden_size: count(i.hidden_size),
                n_heads: count(i.n_heads),
                n_kv_heads: count(i.n_kv_heads),
                n_params: i.n_params,
                weights_bytes: i.weights_bytes,
                bos_token: token(i.bos_token),
                eos_token: token(i.eos_token),
                vocab_only: i.vocab_only != 0,
                decode_bytes_per_token: has(offset_of!(sys::llm_model_info, decode_bytes_per_token) + 8)
                    .then_some(i.decode_bytes_per_token),
                weights_type: (has(offset_of!(sys::llm_model_info, weights_type) + size_of::<usize>())
                    && !i.weights_type.is_null())
                .then(|| opt_str(i.weights_type)),
            })
        }
    }

    /// Whether `token` ends generation for this model.
    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: valid model; any token value is accepted.
        unsafe { sys::llm_token_is_eog(self.as_raw(), token) != 0 }
    }

    /// Tokenize UTF-8 text. `add_special` adds what the tokenizer's
    /// post-processor adds (e.g. BOS). Special-token strings such as `"<s>"`
    /// in the text are recognised; use [`tokenize_with`](Self::tokenize_with)
    /// with `parse_special = false` for untrusted text.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<Token>> {
        self.tokenize_with(text, add_special, true)
    }

    /// Tokenize text (bytes that are not valid UTF-8 are tokenized byte-wise
    /// where the vocabulary allows it). `parse_special = false` treats
    /// special-token strings as plain text.
    pub fn tokenize_with(
        &self,
        text: impl AsRef<[u8]>,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>> {
        let text = text.as_ref();
        let flags = if parse_special {
            sys::LLM_TOKENIZE_DEFAULT
        } else {
            sys::LLM_TOKENIZE_PARSE_SPECIAL_OFF
        };
        fill_buffer(text.len() + 4, |out, cap, n| unsafe {
            // SAFETY: text and out are valid for len and cap elements.
            sys::llm_tokenize_ex(
                self.as_raw(),
                text.as_ptr().cast(),
                text.len(),
                add_special as c_int,
                flags,
                out,
                cap,
                n,
            )
        })
    }

    /// Decode ids to text as Hugging Face's `decode(ids)` does (special tokens
    /// kept). Bytes that are not valid UTF-8 become U+FFFD; see
    /// [`detokenize_bytes`](Self::detokenize_bytes) for the raw output.
    pub fn detokenize(&self, tokens: &[Token]) -> Result<String> {
        self.detokenize_bytes(tokens).map(into_text)
    }

    /// Decode ids to the library's raw output bytes.
    pub fn detokenize_bytes(&self, tokens: &[Token]) -> Result<Vec<u8>> {
        fill_buffer(tokens.len() * 8 + 16, |out: *mut u8, cap, n| unsafe {
            // SAFETY: tokens and out are valid for their lengths.
            sys::llm_detokenize(self.as_raw(), tokens.as_ptr(), tokens.len(), out.cast(), cap, n)
        })
    }

    /// The raw bytes of one token's piece as the decoder renders it in the
    /// middle of a text (may be part of a UTF-8 sequence).
    pub fn token_to_piece(&self, token: Token) -> Result<Vec<u8>> {
        fill_buffer(32, |out: *mut u8, cap, n| unsafe {
            // SAFETY: out is valid for cap bytes.
            sys::llm_token_to_piece(self.as_raw(), token, out.cast(), cap, n)
        })
    }

    /// Render a chat with the model's chat template, as transformers'
    /// `apply_chat_template` does. `add_generation_prompt` appends the
    /// assistant turn's opening.
    ///
    /// Errors: `Unsupported` if the model has no template, the template uses
    /// Jinja outside the supported subset, or the linked library predates
    /// `llm_chat_apply_template`; `InvalidArgument` if the template raises an
    /// error.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage<'_>],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut strings = Vec::with_capacity(messages.len() * 2);
        for m in messages {
            strings.push(c_string("chat message role", m.role)?);
            strings.push(c_string("chat message content", m.content)?);
        }
        let raw: Vec<sys::llm_chat_message> = strings
            .chunks(2)
            .map(|rc| sys::llm_chat_message {
                role: rc[0].as_ptr(),
                content: rc[1].as_ptr(),
            })
            .collect();
        let guess = messages
            .iter()
            .map(|m| m.role.len() + m.content.len() + 32)
            .sum::<usize>()
            + 64;
        self.chat_template_raw(&raw, add_generation_prompt, guess)
            .map(into_text)
    }

    #[cfg(llm_has_chat_template)]
    fn chat_template_raw(&self, raw: &[sys::llm_chat_message], add: bool, guess: usize) -> Result<Vec<u8>> {
        fill_buffer(guess, |out: *mut u8, cap, n| unsafe {
            // SAFETY: the messages point to CStrings alive for the call.
            sys::llm_chat_apply_template(
                self.as_raw(),
                raw.as_ptr(),
                raw.len(),
                add as c_int,
                out.cast(),
                cap,
                n,
            )
        })
    }

    #[cfg(not(llm_has_chat_template))]
    fn chat_template_raw(&self, _: &[sys::llm_chat_message], _: bool, _: usize) -> Result<Vec<u8>> {
        Err(Error::new(
            Status::Unsupported,
            "the linked libllm does not export llm_chat_apply_template (rebuild it and this crate)",
        ))
    }

    /// Bytes [`session_with`](Self::session_with) would reserve for `params`.
    pub fn memory_required(&self, params: &SessionParams) -> Result<u64> {
        let p = params.to_raw();
        let mut bytes = 0u64;
        // SAFETY: valid model and params.
        check(unsafe { sys::llm_session_memory_required(self.as_raw(), &p, &mut bytes) })?;
        Ok(bytes)
    }

    /// A session with the default parameters (the model's full context).
    pub fn session(&self) -> Result<Session> {
        Session::new(self, &SessionParams::default())
    }

    /// A session: reserves its KV cache and every working buffer now.
    pub fn session_with(&self, params: &SessionParams) -> Result<Session> {
        Session::new(self, params)
    }

    /// A [`KvPool`] of `n_tokens` positions of type `kv_type` for sessions of
    /// this model ([`KvPool::new`] takes a memory limit too).
    pub fn kv_pool(&self, n_tokens: i32, kv_type: KvType) -> Result<KvPool> {
        KvPool::new(
            self,
            &KvPoolParams {
                kv_type,
                n_tokens,
                ..KvPoolParams::default()
            },
        )
    }

    /// [`decode_batch`](crate::decode_batch) on sessions that must all be of
    /// this model.
    pub fn decode_batch<S: std::borrow::BorrowMut<Session>>(
        &self,
        sessions: &mut [S],
        tokens: &[Token],
    ) -> Result<()> {
        for (i, s) in sessions.iter_mut().enumerate() {
            if s.borrow_mut().model().as_raw() != self.as_raw() {
                return Err(Error::invalid(format!("sessions[{i}] is not a session of this model")));
            }
        }
        crate::session::decode_batch(sessions, tokens)
    }
}

fn raw_info(model: *mut sys::llm_model) -> Result<sys::llm_model_info> {
    // SAFETY: all-zero is a valid llm_model_info (NULL pointers, zeros).
    let mut info: sys::llm_model_info = unsafe { MaybeUninit::zeroed().assume_init() };
    info.struct_size = size_of::<sys::llm_model_info>();
    // SAFETY: valid model; the library writes at most struct_size bytes.
    check(unsafe { sys::llm_model_get_info(model, &mut info) })?;
    Ok(info)
}

#[cfg(unix)]
pub(crate) fn path_to_c(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("path {} contains a NUL byte", path.display())))
}

#[cfg(not(unix))]
pub(crate) fn path_to_c(path: &Path) -> Result<CString> {
    let s = path
        .to_str()
        .ok_or_else(|| Error::invalid(format!("path {} is not valid Unicode", path.display())))?;
    c_string("path", s)
}
