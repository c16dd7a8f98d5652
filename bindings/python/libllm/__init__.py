"""Python bindings of libllm, an on-device LLM inference runtime.

    import libllm
    with libllm.Model("model.llm") as model, model.session() as s:
        for piece in s.generate("Once upon a time", max_tokens=64):
            print(piece, end="", flush=True)

The shared library is loaded through ctypes on first use; see
:func:`load_library` for where it is looked for (``LIBLLM_PATH`` first).
"""

from __future__ import annotations

from . import capi
from .capi import LibraryNotFoundError, library_path, load_library
from ._errors import (
    BufferTooSmallError,
    CancelledError,
    ContextFullError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    InvalidTokenError,
    LlmError,
    LlmIOError,
    OutOfMemoryError,
    SessionBusyError,
    Status,
    StopReason,
    UnsupportedError,
)
from ._kv import ContextPolicy, KvPool, KvPoolInfo, KvType
from ._model import Model, ModelInfo, SessionSettings
from ._session import SAME_POOL, Piece, Session, SessionInfo, decode_batch

__version__ = "0.1.0"

__all__ = [
    "BufferTooSmallError",
    "CancelledError",
    "ContextFullError",
    "ContextPolicy",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidTokenError",
    "KvPool",
    "KvPoolInfo",
    "KvType",
    "LibraryNotFoundError",
    "LlmError",
    "LlmIOError",
    "Model",
    "ModelInfo",
    "OutOfMemoryError",
    "Piece",
    "SAME_POOL",
    "Session",
    "SessionBusyError",
    "SessionInfo",
    "SessionSettings",
    "Status",
    "StopReason",
    "UnsupportedError",
    "api_version",
    "capi",
    "decode_batch",
    "library_path",
    "load_library",
    "status_string",
    "version",
]


def version() -> str:
    """``llm_version()`` of the loaded library ("MAJOR.MINOR.PATCH")."""
    v = capi.lib().llm_version()
    return v.decode("ascii", "replace") if v else ""


def api_version() -> int:
    """``llm_api_version()`` of the loaded library."""
    return int(capi.lib().llm_api_version())


def status_string(status: Status | int) -> str:
    """``llm_status_string()``: the C name of a status, e.g. "LLM_ERR_FORMAT"."""
    s = capi.lib().llm_status_string(int(status))
    return s.decode("ascii", "replace") if s else ""
