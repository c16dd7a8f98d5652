"""KV cache types, context policies and shared KV page pools (API version 2)."""

from __future__ import annotations

import dataclasses
import enum
import threading
from ctypes import byref, c_void_p, sizeof
from types import TracebackType
from typing import TYPE_CHECKING, Optional, TypeVar, Union

from . import capi as _capi
from ._errors import InvalidArgumentError, Status
from ._util import HandleUse, check, int32, uint64

if TYPE_CHECKING:
    from ._model import Model
    from ._session import Session


class KvType(enum.IntEnum):
    """Mirror of ``llm_kv_type``: how the KV cache stores keys and values.

    Bytes per token and layer for n_kv KV heads of head_dim values (K and V):
    F32 ``8*n_kv*head_dim``; F16, BF16 ``4*n_kv*head_dim``; INT8
    ``2*n_kv*(head_dim+2)``; INT4 ``2*n_kv*(head_dim/2+head_dim/16)`` (head_dim
    a multiple of 32). Wherever a KV type is taken, the strings "f32", "f16",
    "bf16", "int8", "int4" and "default" (any case) are accepted too.
    """

    DEFAULT = 0  # F16
    F32 = 1
    F16 = 2
    BF16 = 3
    INT8 = 4
    INT4 = 5

    @classmethod
    def parse(cls, value: KvTypeLike) -> KvType:
        """A KvType from a KvType, its int value or its name ("int8", "F16"...)."""
        return _parse_enum(cls, value, "kv_type")

    def __str__(self) -> str:
        return self.name.lower()


class ContextPolicy(enum.IntEnum):
    """Mirror of ``llm_context_policy``: what happens when the context is full.

    STOP: evaluation raises ContextFullError, generation stops with
    StopReason.CONTEXT_FULL. SHIFT: the oldest tokens after the first
    ``n_keep`` are dropped (``n_discard`` of them, default half) and the cached
    keys re-rotated, so generation goes on without recomputation. The strings
    "stop" and "shift" are accepted too.
    """

    STOP = 0
    SHIFT = 1

    @classmethod
    def parse(cls, value: ContextPolicyLike) -> ContextPolicy:
        """A ContextPolicy from a ContextPolicy, its int value or its name ("shift")."""
        return _parse_enum(cls, value, "context_policy")

    def __str__(self) -> str:
        return self.name.lower()


KvTypeLike = Union[KvType, int, str]
ContextPolicyLike = Union[ContextPolicy, int, str]

_EnumT = TypeVar("_EnumT", bound=enum.IntEnum)


def _parse_enum(cls: type[_EnumT], value: object, what: str) -> _EnumT:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(repr(m.name.lower()) for m in cls)
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"{what} {value!r} is not one of {names}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a {cls.__name__}, int or str, not {type(value).__name__}")
    try:
        return cls(value)
    except ValueError:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT, f"{what} {value} is not an {cls.__name__} value"
        ) from None


@dataclasses.dataclass(frozen=True)
class KvPoolInfo:
    """What ``llm_kv_pool_get_info`` reports about a pool."""

    kv_type: KvType
    page_tokens: int  # positions per page (LLM_KV_PAGE_TOKENS)
    n_pages: int
    pages_used: int  # holding tokens of some session
    pages_committed: int  # promised to sessions, not yet used
    pages_shared: int  # used by more than one session
    bytes: int  # memory reserved by the pool

    @property
    def pages_free(self) -> int:
        """Pages neither used nor promised: what new sessions can still get."""
        return self.n_pages - self.pages_used - self.pages_committed


class KvPool:
    """A pool of KV-cache pages shared by sessions of one model (``llm_kv_pool``).

    Memory is committed up front: creating a session on the pool reserves
    every page it may still need to fill its context (less the pages it
    shares), raising OutOfMemoryError when the pool cannot provide them, so
    generation never runs out of pages. Sessions of the pool using
    ContextPolicy.STOP share the full pages of a common prefix copy-on-write
    (see :meth:`Session.fork`).

    Thread-safe. ``close()`` (or leaving a ``with`` block) releases this
    handle; sessions already on the pool keep its memory until they are
    closed, but no new session can be put on it. The pool keeps its model
    alive; closing the model closes its pools.
    """

    def __init__(
        self,
        model: Model,
        n_tokens: int,
        kv_type: KvTypeLike = KvType.DEFAULT,
        memory_limit: int = 0,
    ) -> None:
        """Reserve a pool of ``n_tokens`` positions (rounded up to whole
        pages) over all its sessions. OutOfMemoryError if it would exceed
        ``memory_limit`` bytes (0 = none) or the system cannot provide it."""
        self._handle: Optional[int] = None
        self._state = threading.Lock()
        self._closed = False
        self._ops = 0
        self._model = model
        kv = KvType.parse(kv_type)
        _capi.require("llm_kv_pool_create", "KvPool")
        lib = _capi.lib()
        params = _capi.llm_kv_pool_params()
        lib.llm_kv_pool_params_init(byref(params))
        params.struct_size = sizeof(params)
        params.kv_type = int(kv)
        params.n_tokens = int32(n_tokens, "n_tokens")
        params.memory_limit = uint64(memory_limit, "memory_limit")
        out = c_void_p()
        with model._use() as mh:
            check(lib.llm_kv_pool_create(mh, byref(params), byref(out)))
            self._handle = out.value
            model._attach(self)

    @property
    def model(self) -> Model:
        return self._model

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the pool handle (sessions on the pool keep its memory until
        they are closed). Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
        self._maybe_free()

    def _maybe_free(self) -> None:
        with self._state:
            if not self._closed or self._ops or self._handle is None:
                return
            handle, self._handle = self._handle, None
        _capi.lib().llm_kv_pool_free(handle)
        self._model._detach(self)

    def _use(self) -> HandleUse:
        """Keeps the handle alive across one C call (see _maybe_free)."""
        return HandleUse(self, "KV pool")

    def __enter__(self) -> KvPool:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_handle", None) is not None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<libllm.KvPool on {self._model.info.name!r} ({'closed' if self._closed else 'open'})>"

    @property
    def info(self) -> KvPoolInfo:
        """Pages of the pool: total, used, committed, shared; its KV type and bytes."""
        i = _capi.llm_kv_pool_info()
        i.struct_size = sizeof(i)
        with self._use() as h:
            check(_capi.lib().llm_kv_pool_get_info(h, byref(i)))
        return KvPoolInfo(
            kv_type=KvType(i.kv_type) if i.kv_type in KvType._value2member_map_ else KvType.DEFAULT,
            page_tokens=i.page_tokens,
            n_pages=i.n_pages,
            pages_used=i.pages_used,
            pages_committed=i.pages_committed,
            pages_shared=i.pages_shared,
            bytes=i.bytes,
        )

    @property
    def kv_type(self) -> KvType:
        """The cache type of every session on the pool."""
        return self.info.kv_type

    def session(
        self,
        n_ctx: int = 0,
        n_batch: int = 0,
        logits_all: bool = False,
        memory_limit: int = 0,
        *,
        context_policy: ContextPolicyLike = ContextPolicy.STOP,
        n_keep: int = 0,
        n_discard: int = 0,
    ) -> Session:
        """A new session of the pool's model whose KV pages come from this pool
        (same as ``model.session(..., kv_pool=pool)``)."""
        return self._model.session(
            n_ctx, n_batch, logits_all, memory_limit, context_policy=context_policy,
            n_keep=n_keep, n_discard=n_discard, kv_pool=self,
        )
