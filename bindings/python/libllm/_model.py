"""libllm models: loading, metadata, tokenizer, chat template."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import threading
import weakref
from ctypes import byref, c_size_t, c_uint64, c_void_p, sizeof
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Optional, Sequence, TypeVar, Union

from . import capi as _capi
from ._errors import InvalidArgumentError, Status, UnsupportedError
from ._kv import ContextPolicy, ContextPolicyLike, KvPool, KvType, KvTypeLike
from ._util import HandleUse, TokenBuffer, TokenIds, c_string, check, filled, int32, uint64

if TYPE_CHECKING:
    from ._session import Session

_BUFFER_TOO_SMALL = int(Status.BUFFER_TOO_SMALL)


@dataclasses.dataclass(frozen=True)
class SessionSettings:
    """The parameters a session was created with (``llm_session_params``);
    :meth:`Session.fork` starts from these."""

    n_ctx: int = 0
    n_batch: int = 0
    logits_all: bool = False
    memory_limit: int = 0
    kv_type: KvType = KvType.DEFAULT
    context_policy: ContextPolicy = ContextPolicy.STOP
    n_keep: int = 0
    n_discard: int = 0
    kv_pool: Optional[KvPool] = None

    @staticmethod
    def make(
        n_ctx: int = 0,
        n_batch: int = 0,
        logits_all: bool = False,
        memory_limit: int = 0,
        kv_type: KvTypeLike = KvType.DEFAULT,
        context_policy: ContextPolicyLike = ContextPolicy.STOP,
        n_keep: int = 0,
        n_discard: int = 0,
        kv_pool: Optional[KvPool] = None,
    ) -> SessionSettings:
        """Checked and normalised settings (strings parsed, ranges checked)."""
        if kv_pool is not None and not isinstance(kv_pool, KvPool):
            raise TypeError(f"kv_pool must be a KvPool or None, not {type(kv_pool).__name__}")
        return SessionSettings(
            n_ctx=int32(n_ctx, "n_ctx"),
            n_batch=int32(n_batch, "n_batch"),
            logits_all=bool(logits_all),
            memory_limit=uint64(memory_limit, "memory_limit"),
            kv_type=KvType.parse(kv_type),
            context_policy=ContextPolicy.parse(context_policy),
            n_keep=int32(n_keep, "n_keep"),
            n_discard=int32(n_discard, "n_discard"),
            kv_pool=kv_pool,
        )

    def uses_version_2(self) -> bool:
        return (
            self.kv_type != KvType.DEFAULT
            or self.context_policy != ContextPolicy.STOP
            or self.n_keep != 0
            or self.n_discard != 0
            or self.kv_pool is not None
        )


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What ``llm_model_get_info`` reports about a loaded model."""

    architecture: str
    name: str
    vocab_size: int
    context_length: int
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    n_params: int
    weights_bytes: int
    bos_token: int  # -1 if none
    eos_token: int  # -1 if none
    vocab_only: bool
    #: weight bytes read to decode one token (0 if the library does not say)
    decode_bytes_per_token: int = 0
    #: storage of most weight bytes: "f32", "bf16", "int4"... ("" if not reported)
    weights_type: str = ""


def _str(value: Optional[bytes]) -> str:
    return value.decode("utf-8", "replace") if value else ""


_BufT = TypeVar("_BufT")


def _call_growing(
    capacity: int, new: Callable[[int], _BufT], call: Callable[[_BufT, int, c_size_t], int]
) -> tuple[_BufT, int]:
    """``call(buf, capacity, n)`` with ``buf = new(capacity)``, again with a
    larger buffer while the library answers BUFFER_TOO_SMALL with the size it
    needs (in ``n``); returns the buffer and the size written."""
    n = c_size_t()
    while True:
        buf = new(capacity)
        st = call(buf, capacity, n)
        if st == _BUFFER_TOO_SMALL and n.value > capacity:
            capacity = n.value
            continue
        check(st)
        return buf, n.value


class Model:
    """A model file mapped and validated by ``llm_model_load``.

    Read-only after loading: every method may be called from any number of
    threads at once, and any number of :class:`Session` objects may share it.
    ``close()`` (or leaving a ``with`` block) closes the model's sessions, then
    frees it; the C handle is released once the last call using it returns.
    """

    info: ModelInfo
    path: str

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        n_threads: int = 0,
        verify: bool = True,
        device: Optional[str] = None,
    ) -> None:
        """Load ``path``.

        n_threads: CPU worker threads, 0 = number of online cores.
        verify: check every tensor checksum (False: structure only, faster).
        device: compute device, None or "cpu".
        Raises LlmIOError (missing/unreadable file), FormatError (malformed
        file, with what is wrong), UnsupportedError, OutOfMemoryError.
        """
        self._handle: Optional[int] = None
        self._state = threading.Lock()
        self._closed = False
        self._ops = 0
        self._n_sessions = 0
        # Sessions and KV pools: each keeps the C model alive until it is freed.
        self._sessions: weakref.WeakSet[Union[Session, KvPool]] = weakref.WeakSet()
        lib = _capi.lib()
        params = _capi.llm_model_params()
        lib.llm_model_params_init(byref(params))
        params.struct_size = sizeof(params)
        params.n_threads = int32(n_threads, "n_threads")
        params.verify = _capi.VERIFY_FULL if verify else _capi.VERIFY_NONE
        params.device = c_string(device, "device") if device is not None else None
        self.path = os.fspath(path)
        c_path = os.fsencode(path)
        if b"\0" in c_path:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "path contains a NUL character")
        out = c_void_p()
        check(lib.llm_model_load(c_path, byref(params), byref(out)))
        self._handle = out.value
        try:
            info = _capi.llm_model_info()
            info.struct_size = sizeof(info)
            check(lib.llm_model_get_info(self._handle, byref(info)))
            self.info = ModelInfo(
                architecture=_str(info.architecture),
                name=_str(info.name),
                vocab_size=info.vocab_size,
                context_length=info.context_length,
                n_layers=info.n_layers,
                hidden_size=info.hidden_size,
                n_heads=info.n_heads,
                n_kv_heads=info.n_kv_heads,
                n_params=info.n_params,
                weights_bytes=info.weights_bytes,
                bos_token=info.bos_token,
                eos_token=info.eos_token,
                vocab_only=bool(info.vocab_only),
                decode_bytes_per_token=(
                    info.decode_bytes_per_token if filled(info, "decode_bytes_per_token") else 0
                ),
                weights_type=_str(info.weights_type) if filled(info, "weights_type") else "",
            )
        except BaseException:
            lib.llm_model_free(self._handle)
            self._handle = None
            raise

    # ---- lifetime ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close every session and KV pool of this model, then free the model.
        Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            sessions = list(self._sessions)
        for s in sessions:
            s.close()
        self._maybe_free()

    def _maybe_free(self) -> None:
        # The handle goes when the model is closed, no call is using it and no
        # C session refers to it (a session freed later, e.g. by the garbage
        # collector, frees the model after itself).
        with self._state:
            if not self._closed or self._ops or self._n_sessions or self._handle is None:
                return
            handle, self._handle = self._handle, None
        _capi.lib().llm_model_free(handle)

    def _use(self) -> HandleUse:
        """Keeps the handle alive across one C call (see _maybe_free)."""
        return HandleUse(self, "model")

    def _attach(self, session: Union[Session, KvPool]) -> None:
        with self._state:
            self._n_sessions += 1
            self._sessions.add(session)

    def _detach(self, session: Union[Session, KvPool]) -> None:
        with self._state:
            self._n_sessions -= 1
            self._sessions.discard(session)
        self._maybe_free()

    def __enter__(self) -> Model:
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
        state = "closed" if self._closed else "open"
        name = self.info.name if hasattr(self, "info") else "?"
        return f"<libllm.Model {name!r} from {self.path!r} ({state})>"

    # ---- tokenizer (thread-safe) ----------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.info.vocab_size

    def tokenize(
        self, text: Union[str, bytes], add_special: bool = True, parse_special: bool = True
    ) -> list[int]:
        """Token ids of ``text`` (str, or UTF-8 bytes).

        add_special: add what the tokenizer's post-processor adds (e.g. BOS).
        parse_special: recognise special-token strings such as "<s>" in the
        text; pass False for untrusted text so it cannot inject control tokens.
        """
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        flags = _capi.TOKENIZE_DEFAULT if parse_special else _capi.TOKENIZE_PARSE_SPECIAL_OFF
        lib = _capi.lib()
        with self._use() as h:
            buf, n = _call_growing(
                len(data) + 8,
                lambda capacity: (_capi.llm_token * capacity)(),
                lambda buf, capacity, n: lib.llm_tokenize_ex(
                    h, data, len(data), int(bool(add_special)), flags, buf, capacity, byref(n)
                ),
            )
        return buf[:n]

    def detokenize_bytes(self, ids: TokenIds) -> bytes:
        """Like :meth:`detokenize`, as the raw bytes libllm produced."""
        tokens = TokenBuffer(ids)
        lib = _capi.lib()
        with self._use() as h:
            buf, n = _call_growing(
                16 * tokens.n + 16,
                ctypes.create_string_buffer,
                lambda buf, capacity, n: lib.llm_detokenize(
                    h, tokens.ptr, tokens.n, buf, capacity, byref(n)
                ),
            )
        return buf.raw[:n]

    def detokenize(self, ids: TokenIds) -> str:
        """Text of ``ids`` as Hugging Face's ``decode(ids)`` renders it
        (special tokens kept). Invalid UTF-8 becomes U+FFFD."""
        return self.detokenize_bytes(ids).decode("utf-8", "replace")

    def token_to_piece(self, token: int) -> bytes:
        """The raw bytes of one token as rendered mid-text (may be a partial
        UTF-8 sequence). InvalidTokenError outside the vocabulary."""
        t = int32(token, "token")
        lib = _capi.lib()
        with self._use() as h:
            buf, n = _call_growing(
                64,
                ctypes.create_string_buffer,
                lambda buf, capacity, n: lib.llm_token_to_piece(h, t, buf, capacity, byref(n)),
            )
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation for this model."""
        t = int32(token, "token")
        with self._use() as h:
            return bool(_capi.lib().llm_token_is_eog(h, t))

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """Render ``messages`` (dicts with "role" and "content") with the
        model's chat template, as transformers' ``apply_chat_template`` does.

        UnsupportedError if the model has no template, the template uses Jinja
        features outside libllm's subset, or the loaded library predates
        ``llm_chat_apply_template``; InvalidArgumentError if the template
        raises (e.g. roles in the wrong order).
        """
        lib = _capi.lib()
        if not _capi.has_function("llm_chat_apply_template"):
            raise UnsupportedError(
                Status.UNSUPPORTED,
                f"the loaded libllm ({_capi.library_path()}) has no llm_chat_apply_template",
            )
        n = len(messages)
        arr = (_capi.llm_chat_message * max(n, 1))()
        keep: list[bytes] = []
        total = 0
        for i, m in enumerate(messages):
            try:
                role, content = m["role"], m["content"]
            except (KeyError, TypeError):
                raise InvalidArgumentError(
                    Status.INVALID_ARGUMENT, f"messages[{i}] needs 'role' and 'content'"
                ) from None
            r = c_string(role, f"messages[{i}]['role']")
            c = c_string(content, f"messages[{i}]['content']")
            keep += (r, c)
            arr[i].role = r
            arr[i].content = c
            total += len(r) + len(c)
        with self._use() as h:
            buf, out_len = _call_growing(
                2 * total + 256,
                ctypes.create_string_buffer,
                lambda buf, capacity, out: lib.llm_chat_apply_template(
                    h, arr, n, int(bool(add_generation_prompt)), buf, capacity, byref(out)
                ),
            )
        return buf.raw[:out_len].decode("utf-8", "replace")

    # ---- sessions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _session_params(self, settings: SessionSettings) -> Iterator[_capi.llm_session_params]:
        """The C parameters for ``settings``, valid inside the ``with`` block
        (the pool handle, if any, is kept alive meanwhile)."""
        params = _capi.llm_session_params()
        _capi.lib().llm_session_params_init(byref(params))
        if _capi.has_function("llm_session_fork"):
            params.struct_size = sizeof(params)
        else:  # a version-1 library refuses the larger struct
            if settings.uses_version_2():
                _capi.require("llm_session_fork", "kv_type, context_policy, n_keep, n_discard and kv_pool")
            params.struct_size = _capi.SESSION_PARAMS_V1_SIZE
        params.n_ctx = settings.n_ctx
        params.n_batch = settings.n_batch
        params.logits_all = int(settings.logits_all)
        params.memory_limit = settings.memory_limit
        params.kv_type = int(settings.kv_type)
        params.context_policy = int(settings.context_policy)
        params.n_keep = settings.n_keep
        params.n_discard = settings.n_discard
        pool = settings.kv_pool
        if pool is None:
            yield params
            return
        if pool.model is not self:
            raise InvalidArgumentError(Status.INVALID_ARGUMENT, "kv_pool belongs to another model")
        with pool._use() as ph:
            params.kv_pool = ph
            yield params

    def memory_required(
        self,
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
    ) -> int:
        """Bytes :meth:`session` would reserve with these parameters (the KV
        cache counts 0 on a pool)."""
        settings = SessionSettings.make(
            n_ctx, n_batch, logits_all, memory_limit, kv_type, context_policy, n_keep,
            n_discard, kv_pool,
        )
        out = c_uint64()
        with self._use() as h, self._session_params(settings) as params:
            check(_capi.lib().llm_session_memory_required(h, byref(params), byref(out)))
        return out.value

    def session(
        self,
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
    ) -> Session:
        """A new inference session (KV cache and buffers are reserved now).

        n_ctx: context length, 0 = the model's. n_batch: tokens per forward
        step, 0 = min(512, n_ctx). logits_all: keep every position's logits of
        the last eval (see Session.logits_at). memory_limit: byte budget, 0 =
        unlimited (OutOfMemoryError states the bytes needed).
        kv_type: the KV cache's storage, a :class:`KvType` or "f32", "f16"
        (the default), "bf16", "int8", "int4". context_policy: "stop" (the
        default) or "shift" (drop the oldest tokens after the first n_keep,
        n_discard at a time, 0 = half, when the context is full). kv_pool: a
        :class:`KvPool` of this model to take the KV pages from (kv_type is
        then the pool's).
        """
        from ._session import Session

        return Session(
            self, n_ctx=n_ctx, n_batch=n_batch, logits_all=logits_all, memory_limit=memory_limit,
            kv_type=kv_type, context_policy=context_policy, n_keep=n_keep, n_discard=n_discard,
            kv_pool=kv_pool,
        )

    def kv_pool(
        self, n_tokens: int, kv_type: KvTypeLike = KvType.DEFAULT, memory_limit: int = 0
    ) -> KvPool:
        """A :class:`KvPool` of ``n_tokens`` positions for sessions of this model."""
        return KvPool(self, n_tokens, kv_type=kv_type, memory_limit=memory_limit)

    def decode_batch(self, sessions: Sequence[Session], tokens: TokenIds) -> None:
        """Evaluate ``tokens[i]`` in ``sessions[i]`` for every i with one pass
        over the weights (see :func:`libllm.decode_batch`). The sessions must
        be of this model."""
        from ._session import decode_batch

        for i, s in enumerate(sessions):
            if getattr(s, "model", None) is not self:
                raise InvalidArgumentError(
                    Status.INVALID_ARGUMENT, f"sessions[{i}] is not a session of this model"
                )
        decode_batch(sessions, tokens)
