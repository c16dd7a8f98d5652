//! KV cache types, context policies and shared KV page pools (API version 2).
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{check, Error, Result, Status};
use crate::model::Model;
use crate::session::{Session, SessionParams};
use crate::sys;

/// Storage of the KV cache (`llm_kv_type`).
///
/// Bytes per token and layer, for `n_kv` KV heads of `head_dim` values, K and
/// V together: `F32` 8·n_kv·head_dim; `F16`, `Bf16` 4·n_kv·head_dim; `Int8`
/// 2·n_kv·(head_dim + 2); `Int4` 2·n_kv·(head_dim/2 + head_dim/16) (head_dim a
/// multiple of 32). Parses from `"f32"`, `"f16"`, `"bf16"`, `"int8"`,
/// `"int4"`, `"default"` (any case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KvType {
    /// The library's default (F16).
    #[default]
    Default,
    F32,
    F16,
    Bf16,
    /// int8 values, one f16 scale per head and token.
    Int8,
    /// Groups of 32 int4 values with one f16 scale each.
    Int4,
    /// A value this version of the crate does not know (from a newer library).
    Unknown(i32),
}

impl KvType {
    pub fn from_raw(v: sys::llm_kv_type) -> KvType {
        match v {
            sys::LLM_KV_DEFAULT => KvType::Default,
            sys::LLM_KV_F32 => KvType::F32,
            sys::LLM_KV_F16 => KvType::F16,
            sys::LLM_KV_BF16 => KvType::Bf16,
            sys::LLM_KV_INT8 => KvType::Int8,
            sys::LLM_KV_INT4 => KvType::Int4,
            other => KvType::Unknown(other),
        }
    }

    pub fn to_raw(self) -> sys::llm_kv_type {
        match self {
            KvType::Default => sys::LLM_KV_DEFAULT,
            KvType::F32 => sys::LLM_KV_F32,
            KvType::F16 => sys::LLM_KV_F16,
            KvType::Bf16 => sys::LLM_KV_BF16,
            KvType::Int8 => sys::LLM_KV_INT8,
            KvType::Int4 => sys::LLM_KV_INT4,
            KvType::Unknown(v) => v,
        }
    }

    /// `"f16"`, `"int8"`, ...
    pub fn name(self) -> &'static str {
        match self {
            KvType::Default => "default",
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Bf16 => "bf16",
            KvType::Int8 => "int8",
            KvType::Int4 => "int4",
            KvType::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvType::Unknown(v) => write!(f, "unknown({v})"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for KvType {
    type Err = Error;

    fn from_str(s: &str) -> Result<KvType> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "default" => KvType::Default,
            "f32" => KvType::F32,
            "f16" => KvType::F16,
            "bf16" => KvType::Bf16,
            "int8" => KvType::Int8,
            "int4" => KvType::Int4,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown KV type {s:?} (expected f32, f16, bf16, int8, int4 or default)"
                )))
            }
        })
    }
}

/// What happens when a session's context is full (`llm_context_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ContextPolicy {
    /// Evaluation fails with `Status::ContextFull`; generation stops with
    /// `StopReason::ContextFull`.
    #[default]
    Stop,
    /// The oldest tokens after the first [`SessionParams::n_keep`] are dropped
    /// ([`SessionParams::n_discard`] of them, default half) and the cached
    /// keys re-rotated, so generation goes on without recomputation.
    Shift,
    /// A value this version of the crate does not know.
    Unknown(i32),
}

impl ContextPolicy {
    pub fn from_raw(v: sys::llm_context_policy) -> ContextPolicy {
        match v {
            sys::LLM_CONTEXT_STOP => ContextPolicy::Stop,
            sys::LLM_CONTEXT_SHIFT => ContextPolicy::Shift,
            other => ContextPolicy::Unknown(other),
        }
    }

    pub fn to_raw(self) -> sys::llm_context_policy {
        match self {
            ContextPolicy::Stop => sys::LLM_CONTEXT_STOP,
            ContextPolicy::Shift => sys::LLM_CONTEXT_SHIFT,
            ContextPolicy::Unknown(v) => v,
        }
    }
}

impl FromStr for ContextPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<ContextPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stop" => Ok(ContextPolicy::Stop),
            "shift" => Ok(ContextPolicy::Shift),
            _ => Err(Error::invalid(format!(
                "unknown context policy {s:?} (expected stop or shift)"
            ))),
        }
    }
}

impl fmt::Display for ContextPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextPolicy::Stop => f.write_str("stop"),
            ContextPolicy::Shift => f.write_str("shift"),
            ContextPolicy::Unknown(v) => write!(f, "unknown({v})"),
        }
    }
}

/// Options of [`KvPool::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvPoolParams {
    /// Cache type of every session on the pool.
    pub kv_type: KvType,
    /// Capacity in positions over all its sessions (rounded up to pages).
    pub n_tokens: i32,
    /// 0 = none; `Status::OutOfMemory` if the pool would exceed it.
    pub memory_limit: u64,
}

impl KvPoolParams {
    /// A pool of `n_tokens` positions with the library's other defaults.
    pub fn new(n_tokens: i32) -> KvPoolParams {
        KvPoolParams {
            n_tokens,
            ..KvPoolParams::default()
        }
    }
}

impl Default for KvPoolParams {
    fn default() -> Self {
        let p = raw_pool_params();
        KvPoolParams {
            kv_type: KvType::from_raw(p.kv_type),
            n_tokens: p.n_tokens,
            memory_limit: p.memory_limit,
        }
    }
}

fn raw_pool_params() -> sys::llm_kv_pool_params {
    let mut p = MaybeUninit::<sys::llm_kv_pool_params>::zeroed();
    // SAFETY: init fills the whole struct.
    unsafe {
        sys::llm_kv_pool_params_init(p.as_mut_ptr());
        p.assume_init()
    }
}

/// What [`KvPool::info`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvPoolInfo {
    pub kv_type: KvType,
    /// Positions per page ([`sys::LLM_KV_PAGE_TOKENS`]).
    pub page_tokens: usize,
    pub n_pages: u64,
    /// Pages holding tokens of some session.
    pub pages_used: u64,
    /// Pages promised to sessions, not yet used.
    pub pages_committed: u64,
    /// Pages used by more than one session.
    pub pages_shared: u64,
    /// Memory reserved by the pool.
    pub bytes: u64,
}

impl KvPoolInfo {
    /// Pages neither used nor promised: what new sessions can still get.
    pub fn pages_free(&self) -> u64 {
        self.n_pages
            .saturating_sub(self.pages_used + self.pages_committed)
    }
}

pub(crate) struct KvPoolInner {
    raw: NonNull<sys::llm_kv_pool>,
    /// Dropped after the pool handle: the model outlives it.
    model: Model,
}

// SAFETY: llm.h: pool creation, information and freeing are thread-safe, and
// so is creating sessions on one pool from several threads.
unsafe impl Send for KvPoolInner {}
unsafe impl Sync for KvPoolInner {}

impl Drop for KvPoolInner {
    fn drop(&mut self) {
        // SAFETY: last reference of ours; sessions on the pool keep its
        // memory alive by themselves, as the header says.
        unsafe { sys::llm_kv_pool_free(self.raw.as_ptr()) }
    }
}

/// A pool of KV-cache pages shared by sessions of one model (`llm_kv_pool`).
///
/// Memory is committed up front: creating a session on the pool reserves
/// every page it may still need to fill its context (less the pages it
/// shares), failing with `Status::OutOfMemory` when the pool cannot provide
/// them, so generation never runs out of pages. Sessions of the pool using
/// [`ContextPolicy::Stop`] share the full pages of a common prefix
/// copy-on-write (see [`Session::fork`]).
///
/// `Send + Sync` (the pool functions are thread-safe); `clone()` is a cheap
/// counted handle. The pool keeps its model alive; sessions on it keep its
/// memory alive after the last handle is dropped.
#[derive(Clone)]
pub struct KvPool {
    pub(crate) inner: Arc<KvPoolInner>,
}

impl fmt::Debug for KvPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvPool").field("raw", &self.inner.raw).finish()
    }
}

/// Handles are equal when they refer to the same pool.
impl PartialEq for KvPool {
    fn eq(&self, other: &KvPool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for KvPool {}

impl KvPool {
    /// Reserve a pool for sessions of `model`.
    ///
    /// Errors: `InvalidArgument` (n_tokens not positive, bad KV type),
    /// `OutOfMemory` (over `memory_limit`, stating the bytes needed, or the
    /// system cannot provide it).
    pub fn new(model: &Model, params: &KvPoolParams) -> Result<KvPool> {
        let mut p = raw_pool_params();
        p.kv_type = params.kv_type.to_raw();
        p.n_tokens = params.n_tokens;
        p.memory_limit = params.memory_limit;
        let mut raw: *mut sys::llm_kv_pool = ptr::null_mut();
        // SAFETY: valid model and params; thread-safe.
        check(unsafe { sys::llm_kv_pool_create(model.as_raw(), &p, &mut raw) })?;
        let raw =
            NonNull::new(raw).ok_or_else(|| Error::new(Status::Internal, "llm_kv_pool_create gave NULL"))?;
        Ok(KvPool {
            inner: Arc::new(KvPoolInner {
                raw,
                model: model.clone(),
            }),
        })
    }

    /// The raw handle, for calls into [`sys`](crate::sys). Valid while this
    /// handle (or a clone) lives.
    pub fn as_raw(&self) -> *mut sys::llm_kv_pool {
        self.inner.raw.as_ptr()
    }

    /// The model whose sessions the pool serves.
    pub fn model(&self) -> &Model {
        &self.inner.model
    }

    /// Pages of the pool (total, used, committed, shared), its type and size.
    pub fn info(&self) -> Result<KvPoolInfo> {
        // SAFETY: all-zero is a valid llm_kv_pool_info.
        let mut i: sys::llm_kv_pool_info = unsafe { MaybeUninit::zeroed().assume_init() };
        i.struct_size = std::mem::size_of::<sys::llm_kv_pool_info>();
        // SAFETY: valid pool; thread-safe; writes at most struct_size bytes.
        check(unsafe { sys::llm_kv_pool_get_info(self.as_raw(), &mut i) })?;
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(KvPoolInfo {
            kv_type: KvType::from_raw(i.kv_type),
            page_tokens: usize::try_from(i.page_tokens).unwrap_or(0),
            n_pages: count(i.n_pages),
            pages_used: count(i.pages_used),
            pages_committed: count(i.pages_committed),
            pages_shared: count(i.pages_shared),
            bytes: i.bytes,
        })
    }

    /// A session of the pool's model taking its KV pages from this pool
    /// (`params.kv_pool` is set to this pool; `params.kv_type` is ignored).
    pub fn session_with(&self, params: &SessionParams) -> Result<Session> {
        let params = SessionParams {
            kv_pool: Some(self.clone()),
            ..params.clone()
        };
        Session::new(&self.inner.model, &params)
    }
}
