"""libllm sessions: evaluation, logits, sampling and streamed generation."""

from __future__ import annotations

import atexit
import collections
import dataclasses
import ctypes
import os
import threading
import weakref
from ctypes import byref, c_size_t, c_void_p, sizeof
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generator, NamedTuple, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import capi as _capi
from ._errors import (
    InvalidArgumentError,
    SessionBusyError,
    Status,
    StopReason,
    UnsupportedError,
    error_for,
)
from ._kv import ContextPolicy, ContextPolicyLike, KvPool, KvType, KvTypeLike
from ._util import TokenBuffer, TokenIds, as_int, c_string, check, filled, int32, uint64

if TYPE_CHECKING:
    from ._model import Model, SessionSettings

Prompt = Union[str, bytes, Sequence[int], None]


_KV_VALUES = frozenset(int(k) for k in KvType)
_POLICY_VALUES = frozenset(int(p) for p in ContextPolicy)


def _c_path(path: Union[str, os.PathLike[str]]) -> bytes:
    c_path = os.fsencode(path)
    if not c_path:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, "path is empty")
    if b"\0" in c_path:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, "path contains a NUL character")
    return c_path


class Piece(NamedTuple):
    """One piece of streamed text and the token that produced it (-1 for text
    held back until the end, e.g. the start of a stop string that did not
    complete)."""

    text: str
    token: int


def _generate_params(
    *,
    max_tokens: Optional[int] = None,
    temperature: Optional[float] = None,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    min_p: Optional[float] = None,
    repeat_penalty: Optional[float] = None,
    repeat_last_n: Optional[int] = None,
    seed: Optional[int] = None,
    stop: Union[str, Sequence[str]] = (),
    ignore_eos: Optional[bool] = None,
    add_special: Optional[bool] = None,
    parse_special: Optional[bool] = None,
) -> _capi.llm_generate_params:
    """An llm_generate_params from llm_generate_params_init with the given
    fields changed (None keeps the library's default)."""
    p = _capi.llm_generate_params()
    _capi.lib().llm_generate_params_init(byref(p))
    p.struct_size = sizeof(p)
    if max_tokens is not None:
        p.max_tokens = int32(max_tokens, "max_tokens")
    if temperature is not None:
        p.temperature = float(temperature)
    if top_k is not None:
        p.top_k = int32(top_k, "top_k")
    if top_p is not None:
        p.top_p = float(top_p)
    if min_p is not None:
        p.min_p = float(min_p)
    if repeat_penalty is not None:
        p.repeat_penalty = float(repeat_penalty)
    if repeat_last_n is not None:
        p.repeat_last_n = int32(repeat_last_n, "repeat_last_n")
    if seed is not None:
        p.seed = uint64(seed, "seed")
    if ignore_eos is not None:
        p.ignore_eos = int(bool(ignore_eos))
    if add_special is not None:
        p.add_special = int(bool(add_special))
    if parse_special is not None:
        p.parse_special = int(bool(parse_special))
    stops = [stop] if isinstance(stop, (str, bytes)) else list(stop)
    if len(stops) > _capi.MAX_STOP_STRINGS:
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT,
            f"{len(stops)} stop strings; at most {_capi.MAX_STOP_STRINGS} are supported",
        )
    for i, s in enumerate(stops):
        # ctypes keeps the bytes object alive as long as the struct (its _objects).
        p.stop[i] = c_string(s, f"stop[{i}]")
    p.n_stop = len(stops)
    return p


def _prompt_parts(prompt: Prompt) -> tuple[Optional[bytes], Optional[TokenBuffer]]:
    """(text for llm_generate, token ids to evaluate first)."""
    if prompt is None:
        return None, None
    if isinstance(prompt, (str, bytes)):
        return c_string(prompt, "prompt"), None
    return None, TokenBuffer(prompt)


# Streams whose worker thread may still run; stopped at interpreter exit so no
# worker is left inside libllm (and its Python callback) while Python finalizes.
_live_streams: weakref.WeakSet[_Stream] = weakref.WeakSet()


@atexit.register
def _stop_live_streams() -> None:
    for s in list(_live_streams):
        s.finish()


class _Stream:
    """Runs llm_generate on a worker thread and hands its pieces, one at a
    time, to the consumer thread (a Python generator).

    Lock-step: the C callback parks after each piece until the consumer asks
    for the next one, so the session never holds tokens the consumer has not
    seen, and stopping early costs no wasted work. When the consumer stops
    (generator closed, exception, session closed) the parked callback returns
    non-zero and llm_generate ends with LLM_STOP_CALLBACK; the worker is
    always joined before the stream lets go of the session.

    The session's lock is taken by start() on the consumer thread and released
    by the worker when llm_generate has returned.
    """

    def __init__(
        self,
        session: Session,
        prompt: Optional[bytes],
        ids: Optional[TokenBuffer],
        params: _capi.llm_generate_params,
    ) -> None:
        self._session = session
        self._prompt = prompt
        self._ids = ids
        self._params = params
        # Re-entrant: a garbage-collected iterator may run finish() on the worker
        # thread while it is inside the callback.
        self._cond = threading.Condition(threading.RLock())
        self._items: collections.deque[tuple[bytes, int]] = collections.deque()
        self._handed_out = False  # the consumer holds the last piece
        self._resume = False  # the consumer asked for the next piece
        self._stop = False  # the consumer gave up: end llm_generate
        self._in_callback = False  # the worker is parked in the callback
        self._done = False  # llm_generate returned
        self._status = 0
        self._message = ""
        self._handle: Optional[int] = None
        self._thread: Optional[threading.Thread] = None
        # The CFUNCTYPE object must outlive the C call: the stream owns it and
        # the worker (which references the stream) runs the call.
        self._callback = _capi.llm_stream_fn(self._on_piece)

    # -- worker side ---------------------------------------------------------------

    def _on_piece(self, piece: Optional[int], length: int, token: int, _user: Optional[int]) -> int:
        try:
            data = ctypes.string_at(piece, length) if length and piece else b""
            with self._cond:
                if self._stop:
                    return 1
                self._items.append((data, token))
                self._resume = False
                self._in_callback = True
                try:
                    self._cond.notify_all()
                    while not self._resume and not self._stop:
                        self._cond.wait()
                finally:
                    self._in_callback = False
                return 1 if self._stop else 0
        except BaseException:  # never let an exception into C; stop instead
            return 1

    def _run(self) -> None:
        lib = _capi.lib()
        status, message = 0, ""
        try:
            if self._ids is not None and self._ids.n:
                status = lib.llm_session_eval(self._handle, self._ids.ptr, self._ids.n)
            if status == 0:
                status = lib.llm_generate(
                    self._handle, self._prompt, byref(self._params), self._callback, None
                )
            if status != 0:
                message = _capi.last_error()  # same thread, right after the call
        except BaseException as e:  # e.g. ctypes.ArgumentError: report, never hang
            status, message = int(Status.INTERNAL), f"{type(e).__name__}: {e}"
        finally:
            with self._cond:
                self._status, self._message = status, message
                self._done = True
                self._cond.notify_all()
            # Last: the session is handed back only when libllm is done with it.
            # (The consumer joins this thread before its iterator ends, so the
            # session is free again by the time the loop is left.)
            self._session._lock.release()

    # -- consumer side -------------------------------------------------------------

    def start(self) -> None:
        self._handle = self._session._acquire()  # SessionBusyError if in use
        try:
            self._session._stream = self
            self._thread = threading.Thread(target=self._run, name="libllm-generate", daemon=True)
            _live_streams.add(self)
            self._thread.start()
        except BaseException:
            self._session._stream = None
            self._session._lock.release()
            raise

    def next_piece(self) -> Optional[tuple[bytes, int]]:
        """The next piece, or None at the end (raising if llm_generate failed)."""
        with self._cond:
            if self._handed_out:  # the consumer is done with the previous piece
                self._handed_out = False
                self._resume = True
                self._cond.notify_all()
            while not self._items and not self._done:
                self._cond.wait()
            if self._items:
                self._handed_out = True
                return self._items.popleft()
            failed = self._status != 0 and not self._stop
            status, message = self._status, self._message
        if failed:
            raise error_for(status, message)
        return None

    def finish(self) -> None:
        """Stop the worker (if it still runs) and wait for it. Idempotent;
        safe from any thread."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            if not self._done:
                self._stop = True
                self._cond.notify_all()
            busy_in_c = not self._done and not self._in_callback
        if busy_in_c:
            # Evaluating (the prompt, or after an interrupt): stop it soon.
            # (Session.cancel checks the handle under the lock close() frees it
            # under, should the worker end and the session close meanwhile.)
            self._session.cancel()
        if thread is not threading.current_thread():
            thread.join()
        if self._session._stream is self:
            self._session._stream = None
        _live_streams.discard(self)


def _iterate(stream: _Stream) -> Generator[Piece, None, None]:
    stream.start()
    try:
        while True:
            item = stream.next_piece()
            if item is None:
                return
            yield Piece(item[0].decode("utf-8", "replace"), item[1])
    finally:
        stream.finish()


def _texts(pieces: Generator[Piece, None, None]) -> Generator[str, None, None]:
    try:
        for p in pieces:
            if p.text:
                yield p.text
    finally:
        pieces.close()


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    """What ``llm_session_get_info`` reports about a session."""

    n_ctx: int  # context capacity in tokens
    n_batch: int  # largest forward step
    n_tokens: int  # tokens in the context now
    kv_bytes: int  # KV cache reserved by the session (0 on a shared pool)
    memory_bytes: int  # everything the session reserved
    #: KV cache type in use (DEFAULT only from a library older than API version 2)
    kv_type: KvType = KvType.DEFAULT
    #: what happens when the context is full
    context_policy: ContextPolicy = ContextPolicy.STOP
    #: KV bytes of one position, all layers (0 from an older library)
    kv_bytes_per_token: int = 0
    #: context shifts so far
    n_shifts: int = 0


class _Same:
    """Sentinel of Session.fork(kv_pool=...): the source session's pool."""

    _instance: Optional[_Same] = None

    def __new__(cls) -> _Same:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SAME_POOL"


#: ``Session.fork(kv_pool=SAME_POOL)`` (the default): the new session uses the
#: source's pool (or a cache of its own if the source has none).
SAME_POOL = _Same()


def decode_batch(sessions: Sequence[Session], tokens: TokenIds) -> None:
    """Evaluate one token in each of several sessions of one model with a
    single pass over the weights (``llm_decode_batch``): ``tokens[i]`` is
    appended to ``sessions[i]``, whose logits are then those of its new token.

    Decoding n sequences this way costs about as much memory traffic as one.
    The sessions must be distinct, of one model, and idle (SessionBusyError
    otherwise); there may be at most ``n_batch`` of the first one. A full
    context is shifted under ContextPolicy.SHIFT, otherwise ContextFullError
    (nothing is evaluated). InvalidTokenError for ids outside the vocabulary.
    """
    _capi.require("llm_decode_batch", "decode_batch")
    sessions = list(sessions)
    ids = TokenBuffer(tokens)
    if ids.n != len(sessions):
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT, f"{len(sessions)} sessions but {ids.n} tokens"
        )
    if not sessions:
        return
    seen: dict[int, int] = {}
    for i, s in enumerate(sessions):
        if not isinstance(s, Session):
            raise TypeError(f"sessions[{i}] is a {type(s).__name__}, not a Session")
        if id(s) in seen:
            raise InvalidArgumentError(
                Status.INVALID_ARGUMENT, f"sessions[{i}] is sessions[{seen[id(s)]}] again"
            )
        seen[id(s)] = i
    handles = (_capi.llm_session_p * len(sessions))()
    taken: list[Session] = []
    try:
        for i, s in enumerate(sessions):
            handles[i] = s._acquire()  # SessionBusyError / closed: nothing evaluated
            taken.append(s)
        check(_capi.lib().llm_decode_batch(handles, ids.ptr, ids.n))
    finally:
        for s in taken:
            s._lock.release()


class Session:
    """An inference context on a :class:`Model` (``llm_session``).

    A session must be used by one thread at a time; the bindings enforce it by
    raising :class:`SessionBusyError` instead of racing. :meth:`cancel` is the
    exception and may be called from any thread. An unfinished
    :meth:`generate` iterator holds the session until it is exhausted or
    closed (``break`` out of a ``for`` loop closes it once the iterator is
    garbage; call ``.close()`` on it to be explicit).

    The session keeps its model alive; ``close()`` (or leaving a ``with``
    block) frees it.
    """

    def __init__(
        self,
        model: Model,
        n_ctx: int = 0,
        n_batch: int = 0,
        logits_all: bool = False,
        memory_limit: int = 0,
        *,
        kv_type: KvTypeLike = KvType.DEFAULT,
        context_policy: ContextPolicyLike = ContextPolicy.STOP,
        n_keep: int = 0,
        n_discard: int = 0,
        kv_pool: Optional[KvPool] = None,
    ) -> None:
        """A session on ``model``; see :meth:`Model.session` for the parameters."""
        from ._model import SessionSettings

        self._handle: Optional[int] = None
        self._init_state(model, SessionSettings.make(
            n_ctx, n_batch, logits_all, memory_limit, kv_type, context_policy, n_keep,
            n_discard, kv_pool,
        ))
        out = c_void_p()
        with model._use() as mh, model._session_params(self._settings) as params:
            check(_capi.lib().llm_session_create(mh, byref(params), byref(out)))
            self._handle = out.value
            model._attach(self)

    def _init_state(self, model: Model, settings: SessionSettings) -> None:
        self._handle = None
        self._lock = threading.Lock()  # one C call on the session at a time
        self._handle_lock = threading.Lock()  # cancel() versus free
        self._stream: Optional[_Stream] = None
        self._model = model
        self._vocab_size = model.info.vocab_size
        self._settings = settings
        self.logits_all = settings.logits_all

    @property
    def model(self) -> Model:
        return self._model

    @property
    def kv_pool(self) -> Optional[KvPool]:
        """The :class:`KvPool` the session's KV pages come from (None: its own cache)."""
        return self._settings.kv_pool

    @property
    def settings(self) -> SessionSettings:
        """The parameters the session was created with."""
        return self._settings

    # ---- lifetime ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Stop a running generate() iterator, wait for a call running on
        another thread (cancelling it), free the session. Idempotent.
        Views returned by :attr:`logits` dangle afterwards."""
        stream = self._stream
        if stream is not None:
            stream.finish()
        lib = _capi.lib()
        with self._handle_lock:
            if self._handle is None:
                return
            lib.llm_session_cancel(self._handle)  # hurry a call on another thread
        with self._lock:
            with self._handle_lock:
                handle, self._handle = self._handle, None
            if handle is not None:
                lib.llm_session_free(handle)
        if handle is not None:
            self._model._detach(self)

    def __enter__(self) -> Session:
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
        return f"<libllm.Session on {self._model.info.name!r} ({'closed' if self.closed else 'open'})>"

    def _acquire(self) -> int:
        """Take the session for one call; returns the handle."""
        if not self._lock.acquire(blocking=False):
            if self._handle is None:
                raise InvalidArgumentError(Status.INVALID_ARGUMENT, "the session is closed")
            raise SessionBusyError(
                Status.INVALID_ARGUMENT,
                "the session is in use (another thread, or an unfinished generate() iterator: "
                "exhaust it or call its close())",
            )
        if self._handle is None:
            self._lock.release()
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "the session is closed")
        return self._handle

    class _Call:
        __slots__ = ("session", "handle")

        def __init__(self, session: Session) -> None:
            self.session = session
            self.handle = 0

        def __enter__(self) -> int:
            self.handle = self.session._acquire()
            return self.handle

        def __exit__(self, *exc: object) -> None:
            self.session._lock.release()

    def _call(self) -> Session._Call:
        return Session._Call(self)

    # ---- context ------------------------------------------------------------------

    @property
    def n_tokens(self) -> int:
        """Tokens currently in the context."""
        n = c_size_t()
        with self._call() as h:
            check(_capi.lib().llm_session_n_tokens(h, byref(n)))
        return n.value

    @property
    def info(self) -> SessionInfo:
        """Capacity, batch, tokens and memory of the session
        (UnsupportedError if the loaded libllm predates llm_session_get_info)."""
        if not _capi.has_function("llm_session_get_info"):
            raise UnsupportedError(
                Status.UNSUPPORTED,
                f"the loaded libllm ({_capi.library_path()}) has no llm_session_get_info",
            )
        info = _capi.llm_session_info()
        info.struct_size = sizeof(info)
        with self._call() as h:
            check(_capi.lib().llm_session_get_info(h, byref(info)))
        v2 = filled(info, "n_shifts")
        return SessionInfo(
            n_ctx=info.n_ctx, n_batch=info.n_batch, n_tokens=info.n_tokens,
            kv_bytes=info.kv_bytes, memory_bytes=info.memory_bytes,
            kv_type=KvType(info.kv_type) if v2 and info.kv_type in _KV_VALUES else KvType.DEFAULT,
            context_policy=(
                ContextPolicy(info.context_policy)
                if v2 and info.context_policy in _POLICY_VALUES else ContextPolicy.STOP
            ),
            kv_bytes_per_token=info.kv_bytes_per_token if v2 else 0,
            n_shifts=info.n_shifts if v2 else 0,
        )

    def reset(self) -> None:
        """Forget every token in the context (the reserved memory is kept)."""
        with self._call() as h:
            check(_capi.lib().llm_session_reset(h))

    def cancel(self) -> None:
        """Ask a running eval/generate on this session to stop at the next
        step; it raises CancelledError. Safe from any thread. No effect on a
        later call (the flag is cleared when the next one starts)."""
        with self._handle_lock:
            if self._handle is not None:
                _capi.lib().llm_session_cancel(self._handle)

    def eval(self, ids: TokenIds) -> None:
        """Append token ids to the context and run the model over them.

        ContextFullError if they do not fit (nothing is appended);
        InvalidTokenError for ids outside the vocabulary; CancelledError if
        cancelled (the context keeps the tokens evaluated before that point).
        """
        tokens = TokenBuffer(ids)
        with self._call() as h:
            check(_capi.lib().llm_session_eval(h, tokens.ptr, tokens.n))

    def truncate(self, n_tokens: int) -> None:
        """Keep only the first ``n_tokens`` tokens of the context (e.g. to
        regenerate an answer); the KV cache of the rest is dropped without
        recomputation. Logits are unavailable until the next evaluation
        (generate re-evaluates the last token by itself).

        InvalidArgumentError if n_tokens exceeds the context; OutOfMemoryError
        (nothing changed) if the page holding the new end is shared with
        another session and the pool cannot back a copy of it.
        """
        _capi.require("llm_session_truncate", "Session.truncate")
        n = as_int(n_tokens, "n_tokens")
        if n < 0:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"n_tokens = {n} is negative")
        with self._call() as h:
            check(_capi.lib().llm_session_truncate(h, n))

    def fork(
        self,
        *,
        n_ctx: Optional[int] = None,
        n_batch: Optional[int] = None,
        logits_all: Optional[bool] = None,
        memory_limit: Optional[int] = None,
        kv_type: Optional[KvTypeLike] = None,
        context_policy: Optional[ContextPolicyLike] = None,
        n_keep: Optional[int] = None,
        n_discard: Optional[int] = None,
        kv_pool: Union[KvPool, None, _Same] = SAME_POOL,
    ) -> Session:
        """A new session holding a copy of this one's context (tokens, KV
        cache, last logits), e.g. a system prompt evaluated once and continued
        by many sessions.

        Every parameter left out is this session's: with none given the fork
        has this session's settings and pool (``llm_session_fork`` with NULL
        parameters). Sessions of one pool that both use ContextPolicy.STOP
        share the full pages of the common prefix copy-on-write instead of
        copying them. ``kv_pool=None`` forks into a cache of the new session's
        own; a cache that is copied must have this session's KV type.
        """
        _capi.require("llm_session_fork", "Session.fork")
        from ._model import SessionSettings

        overrides = {
            k: v
            for k, v in (
                ("n_ctx", n_ctx), ("n_batch", n_batch), ("logits_all", logits_all),
                ("memory_limit", memory_limit), ("kv_type", kv_type),
                ("context_policy", context_policy), ("n_keep", n_keep), ("n_discard", n_discard),
            )
            if v is not None
        }
        model = self._model
        lib = _capi.lib()
        out = c_void_p()
        src = self._settings
        if not overrides and isinstance(kv_pool, _Same):
            settings = src
            with model._use(), self._call() as h:
                check(lib.llm_session_fork(h, None, byref(out)))
                return Session._adopt(model, out.value, settings)
        pool = src.kv_pool if isinstance(kv_pool, _Same) else kv_pool
        # (Not dataclasses.asdict: it would deep-copy the pool object.)
        base: dict[str, Any] = {f.name: getattr(src, f.name) for f in dataclasses.fields(src)}
        base["kv_pool"] = pool
        if pool is None and "kv_type" not in overrides:
            # A copied cache must keep the source's type: take the one in use.
            base["kv_type"] = self.info.kv_type
        base.update(overrides)
        settings = SessionSettings.make(**base)
        with model._use(), model._session_params(settings) as params, self._call() as h:
            check(lib.llm_session_fork(h, byref(params), byref(out)))
            return Session._adopt(model, out.value, settings)

    @classmethod
    def _adopt(cls, model: Model, handle: Optional[int], settings: SessionSettings) -> Session:
        """Wrap a session handle just made by the C library (called with the
        model in use, right after the call)."""
        s = cls.__new__(cls)
        s._init_state(model, settings)
        s._handle = handle
        model._attach(s)
        return s

    # ---- state ----------------------------------------------------------------------

    def state_size(self) -> int:
        """Bytes :meth:`save_state` would return now."""
        _capi.require("llm_session_state_size", "Session.state_size")
        n = c_size_t()
        with self._call() as h:
            check(_capi.lib().llm_session_state_size(h, byref(n)))
        return n.value

    def save_state(self) -> bytes:
        """The session's state (tokens, KV cache, last logits) as a
        versioned, checksummed byte string bound to the model file; give it
        to :meth:`restore_state` of a session of the same model file and KV
        type."""
        _capi.require("llm_session_save", "Session.save_state")
        lib = _capi.lib()
        n = c_size_t()
        with self._call() as h:
            check(lib.llm_session_state_size(h, byref(n)))
            for _ in range(4):
                buf = ctypes.create_string_buffer(max(n.value, 1))
                st = lib.llm_session_save(h, buf, n.value, byref(n))
                if st == int(Status.BUFFER_TOO_SMALL) and n.value > len(buf):
                    continue
                check(st)
                return buf.raw[: n.value]
        raise error_for(int(Status.INTERNAL), "the session state size kept changing")

    def restore_state(self, state: Union[bytes, bytearray, memoryview]) -> None:
        """Replace the context with a state from :meth:`save_state`.

        FormatError if the bytes are truncated, corrupt or of another version;
        InvalidArgumentError if they come from another model file or KV type;
        ContextFullError if they hold more tokens than this session's
        context. On failure the session is unchanged.
        """
        _capi.require("llm_session_restore", "Session.restore_state")
        if isinstance(state, str):
            raise TypeError("state must be bytes (from save_state()), not str")
        data = state if isinstance(state, bytes) else bytes(memoryview(state))
        with self._call() as h:
            check(_capi.lib().llm_session_restore(h, data, len(data)))

    def save_state_file(self, path: Union[str, os.PathLike[str]]) -> None:
        """:meth:`save_state` into a file (written atomically: a temporary file renamed)."""
        _capi.require("llm_session_save_file", "Session.save_state_file")
        c_path = _c_path(path)
        with self._call() as h:
            check(_capi.lib().llm_session_save_file(h, c_path))

    def restore_state_file(self, path: Union[str, os.PathLike[str]]) -> None:
        """:meth:`restore_state` from a file written by :meth:`save_state_file`
        (LlmIOError if it cannot be read)."""
        _capi.require("llm_session_restore_file", "Session.restore_state_file")
        c_path = _c_path(path)
        with self._call() as h:
            check(_capi.lib().llm_session_restore_file(h, c_path))

    @staticmethod
    def decode_batch(sessions: Sequence[Session], tokens: TokenIds) -> None:
        """Same as :func:`libllm.decode_batch`."""
        decode_batch(sessions, tokens)

    # ---- logits -------------------------------------------------------------------

    def _view(self, ptr: Any, what: str) -> npt.NDArray[np.float32]:
        if not ptr:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, what)
        address = ctypes.cast(ptr, c_void_p).value
        assert address is not None
        buffer = (ctypes.c_float * self._vocab_size).from_address(address)
        # The array's base (a memoryview of `buffer`) keeps the session object
        # alive, so the garbage collector cannot free the memory under a view;
        # close() and later calls still can (see `logits`).
        setattr(buffer, "_session", self)
        arr: npt.NDArray[np.float32] = np.ctypeslib.as_array(buffer)
        arr.flags.writeable = False
        return arr

    @property
    def logits(self) -> npt.NDArray[np.float32]:
        """Logits of the last evaluated position: a read-only float32 array of
        vocab_size that is a zero-copy VIEW of the session's buffer.

        It is valid only until the next call that changes the session (eval,
        generate, sample loop, reset, close); after that it shows other data
        or, once the session is freed, dangling memory. Use :meth:`logits_copy`
        to keep the values. InvalidArgumentError if nothing was evaluated.
        """
        with self._call() as h:
            ptr = _capi.lib().llm_session_logits(h)
        return self._view(ptr, "no logits: evaluate tokens first")

    def logits_copy(self) -> npt.NDArray[np.float32]:
        """A copy of :attr:`logits` that stays valid."""
        with self._call() as h:
            ptr = _capi.lib().llm_session_logits(h)
            return self._view(ptr, "no logits: evaluate tokens first").copy()

    def logits_at(self, i: int) -> npt.NDArray[np.float32]:
        """Logits of the i-th token of the last :meth:`eval` (i < 0 counts from
        the end); needs ``logits_all=True``. A view with the lifetime of
        :attr:`logits` (copy it to keep it)."""
        idx = int32(i, "i")
        with self._call() as h:
            ptr = _capi.lib().llm_session_logits_at(h, idx)
        return self._view(
            ptr,
            f"no logits at position {idx} (needs logits_all=True, an eval, and i in range)",
        )

    # ---- sampling and generation ------------------------------------------------------

    def sample(
        self,
        *,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        repeat_last_n: Optional[int] = None,
        seed: Optional[int] = None,
    ) -> int:
        """Sample one token from the current logits (None: libllm's default;
        temperature <= 0 is greedy). The random generator is seeded from
        ``seed`` by the first call after creation or reset (and by every
        generate); later calls continue its sequence. The token is NOT added
        to the context: :meth:`eval` it to continue."""
        params = _generate_params(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, seed=seed,
        )
        out = _capi.llm_token()
        with self._call() as h:
            check(_capi.lib().llm_session_sample(h, byref(params), byref(out)))
        return out.value

    def generate_pieces(
        self,
        prompt: Prompt = None,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int = 0,
        stop: Union[str, Sequence[str]] = (),
        ignore_eos: bool = False,
        add_special: bool = True,
        parse_special: bool = True,
    ) -> Generator[Piece, None, None]:
        """Like :meth:`generate`, yielding :class:`Piece` (text and token),
        empty pieces included (a token that completes no character yet)."""
        params = _generate_params(
            max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n,
            seed=seed, stop=stop, ignore_eos=ignore_eos, add_special=add_special,
            parse_special=parse_special,
        )
        text, ids = _prompt_parts(prompt)
        return _iterate(_Stream(self, text, ids, params))

    def generate(
        self,
        prompt: Prompt = None,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int = 0,
        stop: Union[str, Sequence[str]] = (),
        ignore_eos: bool = False,
        add_special: bool = True,
        parse_special: bool = True,
    ) -> Generator[str, None, None]:
        """Generate after ``prompt``, yielding text pieces as they are produced.

        prompt: text (evaluated after what the session holds; BOS etc. are
        added when the session is empty and add_special is set), token ids
        (evaluated as they are), or None / "" to continue the context.
        Sampling: temperature <= 0 is greedy; top_k 0, top_p 1, min_p 0 and
        repeat_penalty 1 switch those off. max_tokens <= 0: until EOS or a full
        context. stop: up to 8 strings; generation stops when the text contains
        one (it is not yielded). Each piece is complete UTF-8.

        Arguments are checked now; generation starts at the first ``next()``.
        libllm runs on a worker thread in lock-step with the iterator: leaving
        early (``break``, ``.close()``, an exception) stops it after the last
        piece you received, which stays in the context, and the session is
        usable again (:attr:`stop_reason` is then ``CALLBACK``). An LlmError
        from libllm (e.g. ContextFullError for a prompt that does not fit) is
        raised from the iteration.
        """
        return _texts(self.generate_pieces(
            prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n,
            seed=seed, stop=stop, ignore_eos=ignore_eos, add_special=add_special,
            parse_special=parse_special,
        ))

    def generate_text(
        self,
        prompt: Prompt = None,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int = 0,
        stop: Union[str, Sequence[str]] = (),
        ignore_eos: bool = False,
        add_special: bool = True,
        parse_special: bool = True,
    ) -> str:
        """:meth:`generate` collected into one string.

        Like generate(), libllm runs on a worker thread while the calling
        thread waits, so Ctrl-C (KeyboardInterrupt) stops it promptly, even
        during a long prompt evaluation, and leaves the session usable.
        """
        return "".join(self.generate(
            prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n,
            seed=seed, stop=stop, ignore_eos=ignore_eos, add_special=add_special,
            parse_special=parse_special,
        ))

    @property
    def stop_reason(self) -> StopReason:
        """Why the last generation on this session ended."""
        with self._call() as h:
            return StopReason(_capi.lib().llm_session_stop_reason(h))
