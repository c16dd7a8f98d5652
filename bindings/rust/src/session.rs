use std::any::Any;
use std::borrow::BorrowMut;
use std::cell::Cell;
use std::ffi::CString;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::raw::{c_char, c_int, c_void};
use std::path::Path;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};

use crate::error::{check, Error, Result, Status};
use crate::kv::{ContextPolicy, KvPool, KvType};
use crate::model::{c_string, fill_buffer, path_to_c, Model};
use crate::sys;
use crate::Token;

/// Options of [`Model::session_with`]. `Default` takes the library's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParams {
    /// Context length in tokens; 0 = the model's context length.
    pub n_ctx: i32,
    /// Largest number of tokens evaluated in one forward step; 0 = min(512, n_ctx).
    pub n_batch: i32,
    /// Keep logits for every position of the last [`Session::eval`] (see [`Session::logits_at`]).
    pub logits_all: bool,
    /// Upper bound on the bytes the session may reserve; 0 = no limit.
    pub memory_limit: u64,
    /// Storage of the KV cache (ignored on a pool: the pool's).
    pub kv_type: KvType,
    /// What happens when the context is full.
    pub context_policy: ContextPolicy,
    /// [`ContextPolicy::Shift`]: tokens at the start that are never dropped.
    pub n_keep: i32,
    /// [`ContextPolicy::Shift`]: tokens dropped per shift; 0 = half of the droppable.
    pub n_discard: i32,
    /// `None`: the session reserves a KV cache of its own. Otherwise its
    /// pages come from this pool, which must belong to the same model.
    pub kv_pool: Option<KvPool>,
}

impl Default for SessionParams {
    fn default() -> Self {
        let p = raw_session_params();
        SessionParams {
            n_ctx: p.n_ctx,
            n_batch: p.n_batch,
            logits_all: p.logits_all != 0,
            memory_limit: p.memory_limit,
            kv_type: KvType::from_raw(p.kv_type),
            context_policy: ContextPolicy::from_raw(p.context_policy),
            n_keep: p.n_keep,
            n_discard: p.n_discard,
            kv_pool: None,
        }
    }
}

fn raw_session_params() -> sys::llm_session_params {
    let mut p = MaybeUninit::<sys::llm_session_params>::zeroed();
    // SAFETY: init fills the whole struct.
    unsafe {
        sys::llm_session_params_init(p.as_mut_ptr());
        p.assume_init()
    }
}

impl SessionParams {
    /// The defaults with a context of `n_ctx` tokens.
    pub fn with_n_ctx(n_ctx: i32) -> SessionParams {
        SessionParams {
            n_ctx,
            ..SessionParams::default()
        }
    }

    /// The C struct; its pool pointer borrows from `self.kv_pool`.
    pub(crate) fn to_raw(&self) -> sys::llm_session_params {
        let mut p = raw_session_params();
        p.n_ctx = self.n_ctx;
        p.n_batch = self.n_batch;
        p.logits_all = self.logits_all as i32;
        p.memory_limit = self.memory_limit;
        p.kv_type = self.kv_type.to_raw();
        p.context_policy = self.context_policy.to_raw();
        p.n_keep = self.n_keep;
        p.n_discard = self.n_discard;
        p.kv_pool = self.kv_pool.as_ref().map_or(ptr::null_mut(), |pool| pool.as_raw());
        p
    }
}

/// What [`Session::info`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Context capacity in tokens.
    pub n_ctx: usize,
    /// Largest forward step.
    pub n_batch: usize,
    /// Tokens in the context now.
    pub n_tokens: usize,
    /// KV cache reserved by the session (0 on a shared pool).
    pub kv_bytes: u64,
    /// Everything the session reserved (= [`Model::memory_required`]).
    pub memory_bytes: u64,
    /// KV cache type in use (never [`KvType::Default`] from an API version 2 library).
    pub kv_type: KvType,
    /// What happens when the context is full.
    pub context_policy: ContextPolicy,
    /// KV bytes of one position, all layers.
    pub kv_bytes_per_token: u64,
    /// Context shifts so far.
    pub n_shifts: u64,
}

/// Sampling and stopping options of [`Session::generate`],
/// [`Session::generate_with`] and [`Session::sample`]. `Default` takes the
/// library's defaults (from `llm_generate_params_init`).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// Tokens to generate; <= 0: until end-of-generation or a full context.
    pub max_tokens: i32,
    /// <= 0: greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: i32,
    /// 1 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
    /// 1 = off.
    pub repeat_penalty: f32,
    /// Tokens considered by `repeat_penalty`.
    pub repeat_last_n: i32,
    /// Same seed, same output.
    pub seed: u64,
    /// Add BOS etc. when the session is empty.
    pub add_special: bool,
    /// Recognise special-token strings in the prompt.
    pub parse_special: bool,
    /// Up to [`sys::LLM_MAX_STOP_STRINGS`] strings; generation stops when the
    /// text produced contains one (the stop string is not delivered).
    pub stop: Vec<String>,
    /// Do not stop at end-of-generation tokens.
    pub ignore_eos: bool,
}

fn raw_generate_params() -> sys::llm_generate_params {
    let mut p = MaybeUninit::<sys::llm_generate_params>::zeroed();
    // SAFETY: init fills the whole struct.
    unsafe {
        sys::llm_generate_params_init(p.as_mut_ptr());
        p.assume_init()
    }
}

impl Default for GenerateParams {
    fn default() -> Self {
        let p = raw_generate_params();
        GenerateParams {
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n,
            seed: p.seed,
            add_special: p.add_special != 0,
            parse_special: p.parse_special != 0,
            stop: Vec::new(),
            ignore_eos: p.ignore_eos != 0,
        }
    }
}

impl GenerateParams {
    /// The defaults with `temperature = 0` (always the most likely token).
    pub fn greedy() -> Self {
        GenerateParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    fn stop_strings(&self) -> Result<Vec<CString>> {
        if self.stop.len() > sys::LLM_MAX_STOP_STRINGS {
            return Err(Error::invalid(format!(
                "{} stop strings given; at most {} are supported",
                self.stop.len(),
                sys::LLM_MAX_STOP_STRINGS
            )));
        }
        self.stop.iter().map(|s| c_string("stop string", s)).collect()
    }

    /// The C struct; its `stop` pointers borrow from `stops`.
    fn to_raw(&self, stops: &[CString]) -> sys::llm_generate_params {
        let mut p = raw_generate_params();
        p.max_tokens = self.max_tokens;
        p.temperature = self.temperature;
        p.top_k = self.top_k;
        p.top_p = self.top_p;
        p.min_p = self.min_p;
        p.repeat_penalty = self.repeat_penalty;
        p.repeat_last_n = self.repeat_last_n;
        p.seed = self.seed;
        p.add_special = self.add_special as i32;
        p.parse_special = self.parse_special as i32;
        p.ignore_eos = self.ignore_eos as i32;
        for (slot, s) in p.stop.iter_mut().zip(stops) {
            *slot = s.as_ptr();
        }
        p.n_stop = stops.len().min(sys::LLM_MAX_STOP_STRINGS) as i32;
        p
    }
}

/// Why the last generation on a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// No generation has ended yet.
    None,
    /// An end-of-generation token was sampled.
    Eos,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The text contained a stop string.
    StopString,
    /// The callback asked to stop (or the iterator was dropped).
    Callback,
    /// The context is full.
    ContextFull,
    /// A reason this version of the crate does not know.
    Unknown(i32),
}

impl StopReason {
    pub fn from_raw(v: c_int) -> StopReason {
        match v {
            sys::LLM_STOP_NONE => StopReason::None,
            sys::LLM_STOP_EOS => StopReason::Eos,
            sys::LLM_STOP_MAX_TOKENS => StopReason::MaxTokens,
            sys::LLM_STOP_STRING => StopReason::StopString,
            sys::LLM_STOP_CALLBACK => StopReason::Callback,
            sys::LLM_STOP_CONTEXT_FULL => StopReason::ContextFull,
            other => StopReason::Unknown(other),
        }
    }
}

/// The C session, shared by the [`Session`], a running [`Generation`]'s
/// worker thread (strong references) and [`CancelHandle`]s (weak ones).
pub(crate) struct SessionCore {
    raw: NonNull<sys::llm_session>,
    /// Set while a [`Generation`] worker runs on the session. The `&mut`
    /// borrow a `Generation` holds keeps the `Session` unusable meanwhile; only
    /// if the `Generation` is leaked (`mem::forget`) can the `Session` be used
    /// again while the worker runs, and then this flag makes that a panic
    /// instead of a data race.
    busy: AtomicBool,
    /// Dropped after `drop` has freed the session: the model outlives it.
    model: Model,
    /// What the session was created with (its pool handle included).
    params: SessionParams,
}

// SAFETY: the session is used by one thread at a time: the `Session` is !Sync
// and takes `&mut self` for every call that changes the session; a worker
// thread uses it only while the `Session` is mutably borrowed (or `busy` is
// set). Other threads only call llm_session_cancel, which the header allows
// from any thread. Freeing it (last reference) may happen on any thread.
unsafe impl Send for SessionCore {}
unsafe impl Sync for SessionCore {}

impl Drop for SessionCore {
    fn drop(&mut self) {
        // SAFETY: last reference: nothing else uses the session.
        unsafe { sys::llm_session_free(self.raw.as_ptr()) }
    }
}

/// A generation context (KV cache, sampler, buffers) on a [`Model`].
///
/// `Send` but not `Sync`, as the C API allows: a session may move between
/// threads but is used by one thread at a time. Calls that change it take
/// `&mut self`. The only operation allowed from other threads while it works,
/// cancellation, goes through a [`CancelHandle`].
///
/// The session holds a counted reference to its model, so the model is freed
/// only after its last session.
///
/// ```compile_fail
/// fn is_sync<T: Sync>() {}
/// is_sync::<libllm::Session>();
/// ```
pub struct Session {
    core: Arc<SessionCore>,
    _not_sync: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("raw", &self.core.raw).finish()
    }
}

impl Session {
    /// Create a session on `model` (same as [`Model::session_with`]).
    pub fn new(model: &Model, params: &SessionParams) -> Result<Session> {
        let p = params.to_raw();
        let mut raw: *mut sys::llm_session = ptr::null_mut();
        // SAFETY: valid model and params; session creation is safe
        // concurrently on one model.
        check(unsafe { sys::llm_session_create(model.as_raw(), &p, &mut raw) })?;
        Session::adopt(raw, model.clone(), params.clone(), "llm_session_create")
    }

    fn adopt(raw: *mut sys::llm_session, model: Model, params: SessionParams, what: &str) -> Result<Session> {
        let raw = NonNull::new(raw).ok_or_else(|| Error::new(Status::Internal, format!("{what} gave NULL")))?;
        Ok(Session {
            core: Arc::new(SessionCore {
                raw,
                busy: AtomicBool::new(false),
                model,
                params,
            }),
            _not_sync: PhantomData,
        })
    }

    fn raw(&self) -> *mut sys::llm_session {
        if self.core.busy.load(Ordering::Acquire) {
            panic!("libllm: Session used while a leaked (mem::forget) Generation still runs on it");
        }
        self.core.raw.as_ptr()
    }

    /// The raw handle, for calls into [`sys`](crate::sys) (one thread at a time).
    pub fn as_raw(&self) -> *mut sys::llm_session {
        self.raw()
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model {
        &self.core.model
    }

    /// The parameters the session was created with.
    pub fn params(&self) -> &SessionParams {
        &self.core.params
    }

    /// The pool the session's KV pages come from (`None`: a cache of its own).
    pub fn kv_pool(&self) -> Option<&KvPool> {
        self.core.params.kv_pool.as_ref()
    }

    /// A handle that can cancel this session's running `eval`/`generate` from
    /// any thread. It never keeps the session alive: once the session is
    /// dropped, [`CancelHandle::cancel`] does nothing.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            core: Arc::downgrade(&self.core),
        }
    }

    /// Forget every token in the context (the reserved memory is kept).
    pub fn reset(&mut self) -> Result<()> {
        // SAFETY: valid session, used by this thread only.
        check(unsafe { sys::llm_session_reset(self.raw()) })
    }

    /// Number of tokens currently in the context.
    pub fn n_tokens(&self) -> usize {
        let mut n = 0usize;
        // SAFETY: valid session; fails only for NULL arguments.
        unsafe { sys::llm_session_n_tokens(self.raw(), &mut n) };
        n
    }

    /// Context size, batch size, tokens held and memory reserved.
    pub fn info(&self) -> Result<SessionInfo> {
        self.info_impl()
    }

    #[cfg(llm_has_session_info)]
    fn info_impl(&self) -> Result<SessionInfo> {
        // SAFETY: all-zero is a valid llm_session_info.
        let mut i: sys::llm_session_info = unsafe { MaybeUninit::zeroed().assume_init() };
        i.struct_size = std::mem::size_of::<sys::llm_session_info>();
        // SAFETY: valid session; the library writes at most struct_size bytes.
        check(unsafe { sys::llm_session_get_info(self.raw(), &mut i) })?;
        let count = |v: i32| usize::try_from(v).unwrap_or(0);
        Ok(SessionInfo {
            n_ctx: count(i.n_ctx),
            n_batch: count(i.n_batch),
            n_tokens: count(i.n_tokens),
            kv_bytes: i.kv_bytes,
            memory_bytes: i.memory_bytes,
            kv_type: KvType::from_raw(i.kv_type),
            context_policy: ContextPolicy::from_raw(i.context_policy),
            kv_bytes_per_token: i.kv_bytes_per_token,
            n_shifts: i.n_shifts,
        })
    }

    #[cfg(not(llm_has_session_info))]
    fn info_impl(&self) -> Result<SessionInfo> {
        Err(Error::new(
            Status::Unsupported,
            "the linked libllm does not export llm_session_get_info (rebuild it and this crate)",
        ))
    }

    /// Append tokens to the context and run the model over them; the logits
    /// of the last one are then available.
    ///
    /// Errors: `ContextFull` (nothing appended), `InvalidToken`, `Cancelled`
    /// (the context holds what was evaluated before; the session stays usable).
    pub fn eval(&mut self, tokens: &[Token]) -> Result<()> {
        // SAFETY: valid session and token slice.
        check(unsafe { sys::llm_session_eval(self.raw(), tokens.as_ptr(), tokens.len()) })
    }

    /// Keep only the first `n_tokens` tokens of the context (e.g. to
    /// regenerate an answer); the KV cache of the rest is dropped without
    /// recomputation. Logits are unavailable until the next evaluation
    /// (generation re-evaluates the last token by itself).
    ///
    /// Errors: `InvalidArgument` if `n_tokens` exceeds the context;
    /// `OutOfMemory` (nothing changed) if the page holding the new end is
    /// shared and the pool cannot back its copy.
    pub fn truncate(&mut self, n_tokens: usize) -> Result<()> {
        // SAFETY: valid session, used by this thread only.
        check(unsafe { sys::llm_session_truncate(self.raw(), n_tokens) })
    }

    /// A new session holding a copy of this one's context (tokens, KV cache,
    /// last logits), with this session's parameters and pool. On a pool (and
    /// with [`ContextPolicy::Stop`]) the full pages are shared copy-on-write
    /// instead of copied.
    pub fn fork(&self) -> Result<Session> {
        let mut raw: *mut sys::llm_session = ptr::null_mut();
        // SAFETY: valid session, not in use elsewhere (`Session` is !Sync and
        // a running Generation borrows it mutably).
        check(unsafe { sys::llm_session_fork(self.raw(), ptr::null(), &mut raw) })?;
        Session::adopt(raw, self.core.model.clone(), self.core.params.clone(), "llm_session_fork")
    }

    /// [`fork`](Self::fork) with other parameters (start from
    /// [`params`](Self::params)`.clone()`). With `params.kv_pool` equal to
    /// this session's pool the full pages are shared; otherwise the cache is
    /// copied, and must keep this session's type: [`KvType::Default`] here
    /// means "the source's type".
    pub fn fork_with(&self, params: &SessionParams) -> Result<Session> {
        let mut params = params.clone();
        if params.kv_pool.is_none() && params.kv_type == KvType::Default {
            params.kv_type = self.info()?.kv_type;
        }
        if let Some(pool) = &params.kv_pool {
            if pool.model().as_raw() != self.core.model.as_raw() {
                return Err(Error::invalid("kv_pool belongs to another model"));
            }
        }
        let p = params.to_raw();
        let mut raw: *mut sys::llm_session = ptr::null_mut();
        // SAFETY: as in fork(); params (and its pool) outlive the call.
        check(unsafe { sys::llm_session_fork(self.raw(), &p, &mut raw) })?;
        Session::adopt(raw, self.core.model.clone(), params, "llm_session_fork")
    }

    /// Bytes [`save_state`](Self::save_state) would return now.
    pub fn state_size(&self) -> Result<usize> {
        let mut n = 0usize;
        // SAFETY: valid session.
        check(unsafe { sys::llm_session_state_size(self.raw(), &mut n) })?;
        Ok(n)
    }

    /// The session's state (tokens, KV cache, last logits) as a versioned,
    /// checksummed byte string bound to the model file; give it to
    /// [`restore_state`](Self::restore_state) of a session of the same model
    /// file and KV type.
    pub fn save_state(&self) -> Result<Vec<u8>> {
        let raw = self.raw();
        let size = self.state_size()?;
        fill_buffer(size, |buf: *mut u8, cap, n| unsafe {
            // SAFETY: buf is valid for cap bytes.
            sys::llm_session_save(raw, buf.cast(), cap, n)
        })
    }

    /// Replace the context with a saved state.
    ///
    /// Errors: `Format` (truncated, corrupt, another version),
    /// `InvalidArgument` (another model file or KV type), `ContextFull` (more
    /// tokens than this context holds). On failure the session is unchanged.
    pub fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        // SAFETY: valid session; state is valid for its length.
        check(unsafe { sys::llm_session_restore(self.raw(), state.as_ptr().cast(), state.len()) })
    }

    /// [`save_state`](Self::save_state) into a file (written atomically: a
    /// temporary file renamed).
    pub fn save_state_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let c_path = path_to_c(path.as_ref())?;
        // SAFETY: valid session and NUL-terminated path.
        check(unsafe { sys::llm_session_save_file(self.raw(), c_path.as_ptr()) })
    }

    /// [`restore_state`](Self::restore_state) from a file (`Io` if it cannot be read).
    pub fn restore_state_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let c_path = path_to_c(path.as_ref())?;
        // SAFETY: valid session and NUL-terminated path.
        check(unsafe { sys::llm_session_restore_file(self.raw(), c_path.as_ptr()) })
    }

    /// `vocab_size` logits of the last evaluated position; `None` before anything was evaluated.
    pub fn logits(&self) -> Option<&[f32]> {
        // SAFETY: valid session; the logits stay valid until the next call
        // that changes the session, which needs `&mut self`.
        unsafe { self.logits_slice(sys::llm_session_logits(self.raw())) }
    }

    /// Logits of the `i`-th token of the last `eval` (needs
    /// [`SessionParams::logits_all`]; `i < 0` counts from the end).
    pub fn logits_at(&self, i: i32) -> Option<&[f32]> {
        // SAFETY: as for logits().
        unsafe { self.logits_slice(sys::llm_session_logits_at(self.raw(), i)) }
    }

    unsafe fn logits_slice(&self, p: *const f32) -> Option<&[f32]> {
        if p.is_null() {
            None
        } else {
            Some(std::slice::from_raw_parts(p, self.core.model.vocab_size()))
        }
    }

    /// Sample one token from the current logits with `params`' sampling
    /// fields. The session's random generator is seeded from `params.seed`
    /// by the first call after creation or reset (and by every generation).
    pub fn sample(&mut self, params: &GenerateParams) -> Result<Token> {
        let p = params.to_raw(&[]);
        let mut token: Token = -1;
        // SAFETY: valid session and params.
        check(unsafe { sys::llm_session_sample(self.raw(), &p, &mut token) })?;
        Ok(token)
    }

    /// Why the last generation on this session ended.
    pub fn stop_reason(&self) -> StopReason {
        // SAFETY: valid session.
        StopReason::from_raw(unsafe { sys::llm_session_stop_reason(self.raw()) })
    }

    /// Evaluate `prompt` after what the session holds ("" continues from the
    /// context), then sample tokens, calling `on_piece` with the text of each
    /// (complete UTF-8; may be empty while a character is incomplete). Return
    /// `true` from `on_piece` to go on, `false` to stop. This maps directly
    /// onto `llm_generate` and runs on the calling thread.
    ///
    /// A panic in `on_piece` stops the generation (the panic never crosses
    /// the C code) and is resumed once `llm_generate` has returned; the
    /// session stays usable.
    pub fn generate_with<F>(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        mut on_piece: F,
    ) -> Result<StopReason>
    where
        F: FnMut(&str) -> bool,
    {
        self.generate_with_tokens(prompt, params, |piece, _| on_piece(piece))
    }

    /// [`generate_with`](Self::generate_with), also passing the token just
    /// sampled (`None` for text held back until the end, e.g. the start of a
    /// stop string that did not complete).
    pub fn generate_with_tokens<F>(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_piece: F,
    ) -> Result<StopReason>
    where
        F: FnMut(&str, Option<Token>) -> bool,
    {
        struct State<F> {
            f: F,
            panic: Option<Box<dyn Any + Send + 'static>>,
        }

        unsafe extern "C" fn trampoline<F: FnMut(&str, Option<Token>) -> bool>(
            piece: *const c_char,
            len: usize,
            token: Token,
            user_data: *mut c_void,
        ) -> c_int {
            // SAFETY: user_data is the State<F> below, exclusively ours during
            // llm_generate; piece holds len bytes.
            let state = &mut *(user_data as *mut State<F>);
            if state.panic.is_some() {
                return 1;
            }
            let bytes = if len == 0 || piece.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(piece as *const u8, len)
            };
            let f = &mut state.f;
            match catch_unwind(AssertUnwindSafe(|| {
                let text = String::from_utf8_lossy(bytes);
                f(&text, if token >= 0 { Some(token) } else { None })
            })) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(payload) => {
                    state.panic = Some(payload);
                    1
                }
            }
        }

        let prompt = c_string("prompt", prompt)?;
        let stops = params.stop_strings()?;
        let p = params.to_raw(&stops);
        let raw = self.raw();
        let mut state = State {
            f: on_piece,
            panic: None,
        };
        // SAFETY: valid session used by this thread; prompt, params and state
        // outlive the call; the trampoline matches State<F>.
        let st = unsafe {
            sys::llm_generate(
                raw,
                prompt.as_ptr(),
                &p,
                Some(trampoline::<F>),
                &mut state as *mut State<F> as *mut c_void,
            )
        };
        let result = if st == sys::LLM_OK {
            Ok(self.stop_reason())
        } else {
            Err(Error::last(st))
        };
        if let Some(payload) = state.panic {
            resume_unwind(payload);
        }
        result
    }

    /// Stream a generation as an iterator of text pieces (non-empty, complete
    /// UTF-8), with the semantics of [`generate_with`](Self::generate_with).
    ///
    /// The C call runs on a worker thread that hands over one piece at a time
    /// (it is never more than one token ahead of the consumer). A failure is
    /// yielded as the last item. Dropping the iterator early stops the
    /// generation (as a callback returning `false` would: the pieces produced
    /// stay in the context) and waits for the worker, so the session is
    /// usable again at once. After the end, [`Generation::stop_reason`] tells
    /// why it ended.
    ///
    /// The session stays mutably borrowed while the iterator lives:
    ///
    /// ```compile_fail
    /// # fn f(session: &mut libllm::Session) {
    /// let pieces = session.generate("Hello", &libllm::GenerateParams::default());
    /// session.reset().unwrap(); // error: session is still borrowed
    /// drop(pieces);
    /// # }
    /// ```
    pub fn generate(&mut self, prompt: &str, params: &GenerateParams) -> Generation<'_> {
        match self.start(prompt, params) {
            Ok(g) => g,
            Err(e) => Generation {
                rx: None,
                worker: None,
                stop: Arc::new(AtomicBool::new(false)),
                pending: Some(e),
                reason: None,
                _session: PhantomData,
            },
        }
    }

    fn start(&mut self, prompt: &str, params: &GenerateParams) -> Result<Generation<'_>> {
        self.raw(); // not in use by a leaked Generation
        let prompt = c_string("prompt", prompt)?;
        let stops = params.stop_strings()?;
        let params = params.clone();
        let (tx, rx) = mpsc::sync_channel::<Msg>(0);
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = Arc::clone(&stop);
        let core = Arc::clone(&self.core);
        self.core.busy.store(true, Ordering::Relaxed);
        let spawned = thread::Builder::new()
            .name("libllm-generate".into())
            .spawn(move || run_worker(core, prompt, params, stops, tx, worker_stop));
        match spawned {
            Ok(worker) => Ok(Generation {
                rx: Some(rx),
                worker: Some(worker),
                stop,
                pending: None,
                reason: None,
                _session: PhantomData,
            }),
            Err(e) => {
                self.core.busy.store(false, Ordering::Release);
                Err(Error::new(
                    Status::OutOfMemory,
                    format!("cannot start the generation thread: {e}"),
                ))
            }
        }
    }
}

/// Evaluate one token in each of several sessions of one model with a single
/// pass over the weights (`llm_decode_batch`): `tokens[i]` is appended to
/// `sessions[i]`, whose logits are then those of its new token. Decoding n
/// sequences this way costs about as much memory traffic as one.
///
/// Takes `&mut [&mut Session]`, `&mut [Session]`, `&mut [Box<Session>]`...:
/// exclusive borrows, so the sessions are distinct and idle by construction.
/// There may be at most `n_batch` of the first session's.
///
/// Errors (nothing evaluated): `InvalidArgument` (lengths differ, sessions of
/// different models, more than `n_batch`), `InvalidToken`, `ContextFull` (a
/// full context under [`ContextPolicy::Stop`]; one under `Shift` is shifted).
///
/// One session cannot be passed twice:
///
/// ```compile_fail
/// # fn f(s: &mut libllm::Session) {
/// libllm::decode_batch(&mut [&mut *s, &mut *s], &[1, 2]).unwrap();
/// # }
/// ```
pub fn decode_batch<S: BorrowMut<Session>>(sessions: &mut [S], tokens: &[Token]) -> Result<()> {
    if sessions.len() != tokens.len() {
        return Err(Error::invalid(format!(
            "{} sessions but {} tokens",
            sessions.len(),
            tokens.len()
        )));
    }
    let raw: Vec<*mut sys::llm_session> = sessions.iter_mut().map(|s| s.borrow_mut().raw()).collect();
    // SAFETY: distinct sessions (exclusive borrows), each used by this thread
    // only for the duration of the call; tokens has raw.len() elements.
    check(unsafe { sys::llm_decode_batch(raw.as_ptr(), tokens.as_ptr(), raw.len()) })
}

enum Msg {
    Piece(String),
    Done(StopReason),
    Failed(Error),
}

struct WorkerCtx {
    tx: SyncSender<Msg>,
    stop: Arc<AtomicBool>,
}

unsafe extern "C" fn send_piece(
    piece: *const c_char,
    len: usize,
    _token: Token,
    user_data: *mut c_void,
) -> c_int {
    // SAFETY: user_data is the worker's WorkerCtx, alive during llm_generate.
    let ctx = &*(user_data as *const WorkerCtx);
    if ctx.stop.load(Ordering::Acquire) {
        return 1;
    }
    if len == 0 || piece.is_null() {
        return 0;
    }
    // SAFETY: piece holds len bytes.
    let bytes = std::slice::from_raw_parts(piece as *const u8, len);
    let sent = catch_unwind(AssertUnwindSafe(|| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        // Blocks until the consumer takes it; fails once the iterator is dropped.
        ctx.tx.send(Msg::Piece(text)).is_ok()
    }));
    match sent {
        Ok(true) => 0,
        _ => 1,
    }
}

/// Clears `busy` when the worker is done with the session, even by unwinding.
struct ClearBusy<'a>(&'a SessionCore);

impl Drop for ClearBusy<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

fn run_worker(
    core: Arc<SessionCore>,
    prompt: CString,
    params: GenerateParams,
    stops: Vec<CString>,
    tx: SyncSender<Msg>,
    stop: Arc<AtomicBool>,
) {
    let ctx = WorkerCtx { tx, stop };
    let last = {
        let _busy = ClearBusy(&core);
        let p = params.to_raw(&stops);
        let raw = core.raw.as_ptr();
        // SAFETY: the session is ours until `busy` is cleared (see SessionCore);
        // prompt, params, stops and ctx outlive the call.
        let st = unsafe {
            sys::llm_generate(
                raw,
                prompt.as_ptr(),
                &p,
                Some(send_piece),
                &ctx as *const WorkerCtx as *mut c_void,
            )
        };
        if st == sys::LLM_OK {
            // SAFETY: as above.
            Msg::Done(StopReason::from_raw(unsafe { sys::llm_session_stop_reason(raw) }))
        } else {
            Msg::Failed(Error::last(st))
        }
    };
    let _ = ctx.tx.send(last);
}

/// The iterator returned by [`Session::generate`]: text pieces as they are
/// generated, or one final error.
pub struct Generation<'s> {
    rx: Option<Receiver<Msg>>,
    worker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pending: Option<Error>,
    reason: Option<StopReason>,
    _session: PhantomData<&'s mut Session>,
}

impl Generation<'_> {
    /// Why the generation ended; `None` until the iterator has returned `None`
    /// (or if it failed).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.reason
    }

    fn finish(&mut self) {
        self.rx = None; // a worker blocked on a send sees the iterator gone and stops
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        let msg = self.rx.as_ref()?.recv();
        match msg {
            Ok(Msg::Piece(text)) => Some(Ok(text)),
            Ok(Msg::Done(reason)) => {
                self.reason = Some(reason);
                self.finish();
                None
            }
            Ok(Msg::Failed(e)) => {
                self.finish();
                Some(Err(e))
            }
            Err(_) => {
                self.finish();
                None
            }
        }
    }
}

impl FusedIterator for Generation<'_> {}

impl Drop for Generation<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.finish();
    }
}

impl std::fmt::Debug for Generation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("running", &self.worker.is_some())
            .field("reason", &self.reason)
            .finish()
    }
}

/// Cancels the running `eval`/`generate` of a [`Session`] from any thread
/// (`Send + Sync + Clone`); obtained with [`Session::cancel_handle`].
///
/// The handle refers to the session weakly: it never keeps it alive and can
/// never reach a freed session. Once the session is dropped, `cancel` does
/// nothing.
#[derive(Clone, Debug)]
pub struct CancelHandle {
    core: Weak<SessionCore>,
}

impl CancelHandle {
    /// Ask the session's running eval/generate to stop at the next step; it
    /// then fails with [`Status::Cancelled`]. The request is forgotten when the
    /// next eval/generate starts, so a cancel that arrives while nothing runs
    /// has no effect.
    pub fn cancel(&self) {
        if let Some(core) = self.core.upgrade() {
            // SAFETY: the session is alive while `core` is held;
            // llm_session_cancel is safe from any thread.
            unsafe { sys::llm_session_cancel(core.raw.as_ptr()) }
        }
    }

    /// Whether the session still exists.
    pub fn is_alive(&self) -> bool {
        self.core.strong_count() > 0
    }
}
