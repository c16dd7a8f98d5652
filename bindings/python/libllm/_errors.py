"""Status codes and the exceptions that carry them."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Mirror of ``llm_status`` in ``llm.h``."""

    OK = 0
    INVALID_ARGUMENT = 1
    IO = 2
    FORMAT = 3
    UNSUPPORTED = 4
    OUT_OF_MEMORY = 5
    CONTEXT_FULL = 6
    BUFFER_TOO_SMALL = 7
    CANCELLED = 8
    INVALID_TOKEN = 9
    INTERNAL = 10


class StopReason(enum.IntEnum):
    """Mirror of ``llm_stop_reason``: why the last generation on a session ended."""

    NONE = 0
    EOS = 1
    MAX_TOKENS = 2
    STRING = 3
    CALLBACK = 4
    CONTEXT_FULL = 5


class LlmError(Exception):
    """A libllm call failed.

    ``status`` is the :class:`Status` the C function returned and ``message``
    the text of ``llm_last_error()`` read on the failing thread right after it.
    """

    status: Status
    message: str

    def __init__(self, status: Status | int, message: str = "") -> None:
        try:
            st = Status(status)
        except ValueError:  # a code from a newer library than these bindings
            st = Status.INTERNAL
        self.status = st
        self.message = message
        super().__init__(status, message)

    def __str__(self) -> str:
        name = f"LLM_ERR_{self.status.name}" if self.status != Status.OK else "LLM_OK"
        return f"{name}: {self.message}" if self.message else name

    def __reduce__(self) -> tuple[type[LlmError], tuple[int, str]]:
        return (type(self), (int(self.status), self.message))


class InvalidArgumentError(LlmError, ValueError):
    """LLM_ERR_INVALID_ARGUMENT: bad argument, closed handle, bad struct..."""


class LlmIOError(LlmError):
    """LLM_ERR_IO: a file cannot be opened, read or written."""


class FormatError(LlmError):
    """LLM_ERR_FORMAT: the model file is malformed, corrupt or of a wrong version."""


class UnsupportedError(LlmError):
    """LLM_ERR_UNSUPPORTED: valid input this build of libllm cannot handle."""


class OutOfMemoryError(LlmError):
    """LLM_ERR_OUT_OF_MEMORY: allocation failed or the memory budget is exceeded."""


class ContextFullError(LlmError):
    """LLM_ERR_CONTEXT_FULL: the session's context cannot hold more tokens."""


class BufferTooSmallError(LlmError):
    """LLM_ERR_BUFFER_TOO_SMALL (the bindings size buffers themselves; rarely seen)."""


class CancelledError(LlmError):
    """LLM_ERR_CANCELLED: :meth:`Session.cancel` stopped the call."""


class InvalidTokenError(LlmError, ValueError):
    """LLM_ERR_INVALID_TOKEN: a token id outside the vocabulary."""


class InternalError(LlmError):
    """LLM_ERR_INTERNAL: a bug in libllm."""


class SessionBusyError(LlmError, RuntimeError):
    """The session is in use by another call (another thread, or an unfinished
    :meth:`Session.generate` iterator). Status is INVALID_ARGUMENT; raised by the
    bindings, not by the C library."""


_BY_STATUS: dict[Status, type[LlmError]] = {
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.IO: LlmIOError,
    Status.FORMAT: FormatError,
    Status.UNSUPPORTED: UnsupportedError,
    Status.OUT_OF_MEMORY: OutOfMemoryError,
    Status.CONTEXT_FULL: ContextFullError,
    Status.BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.CANCELLED: CancelledError,
    Status.INVALID_TOKEN: InvalidTokenError,
    Status.INTERNAL: InternalError,
}


def error_for(status: int, message: str) -> LlmError:
    """The exception instance for a failing status code."""
    try:
        cls = _BY_STATUS.get(Status(status), LlmError)
    except ValueError:
        cls = LlmError
        message = f"unknown status {status}: {message}"
    return cls(status, message)
