"""Small helpers shared by the model, KV pool and session wrappers."""

from __future__ import annotations

import array
import ctypes
import operator
import threading
from typing import Iterable, Optional, Protocol, Sequence, Union

from . import capi as _capi
from ._errors import InvalidArgumentError, InvalidTokenError, Status, error_for

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
UINT64_MAX = 2**64 - 1

TokenIds = Union[Sequence[int], Iterable[int]]


def check(status: int) -> None:
    """Raise the LlmError for a failing status. Call it right after the C call,
    on the same thread: llm_last_error() is thread-local."""
    if status != 0:
        raise error_for(status, _capi.last_error())


def int32(value: int, name: str) -> int:
    v = as_int(value, name)
    if not INT32_MIN <= v <= INT32_MAX:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{name} = {v} does not fit in int32")
    return v


def uint64(value: int, name: str) -> int:
    v = as_int(value, name)
    if not 0 <= v <= UINT64_MAX:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{name} = {v} does not fit in uint64")
    return v


def as_int(value: int, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def filled(info: ctypes.Structure, field: str) -> bool:
    """Whether the library wrote `field`: it sets struct_size to the bytes it
    filled, which is less than ours when it predates the field."""
    f = getattr(type(info), field)
    return bool(info.struct_size >= f.offset + f.size)


def c_string(value: Union[str, bytes], name: str) -> bytes:
    """UTF-8 bytes for a NUL-terminated C string (refusing embedded NULs,
    which C would silently cut the string at)."""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if b"\0" in data:
        raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"{name} contains a NUL character")
    return data


class TokenBuffer:
    """Token ids packed as int32 for the C side (checked: no silent wrap-around)."""

    __slots__ = ("data", "n", "ptr")

    def __init__(self, ids: TokenIds) -> None:
        if isinstance(ids, (str, bytes)):
            raise TypeError("expected token ids (a sequence of int), not text; use Model.tokenize()")
        tolist = getattr(ids, "tolist", None)  # NumPy arrays and scalars
        if tolist is not None:
            ids = tolist()
            if isinstance(ids, int):
                ids = [ids]
        try:
            self.data = array.array("i", ids)
        except OverflowError as e:
            raise InvalidTokenError(Status.INVALID_TOKEN, f"token id out of int32 range: {e}") from None
        assert self.data.itemsize == 4
        self.n = len(self.data)
        self.ptr: Optional[ctypes.Array[ctypes.c_int32]] = (
            (ctypes.c_int32 * self.n).from_buffer(self.data) if self.n else None
        )


class _HandleOwner(Protocol):
    """What HandleUse needs of a Model or KvPool."""

    _state: threading.Lock
    _closed: bool
    _handle: Optional[int]
    _ops: int

    def _maybe_free(self) -> None: ...


class HandleUse:
    """Keeps an owner's handle alive across one C call (see its _maybe_free);
    InvalidArgumentError "the <what> is closed" if it is closed."""

    __slots__ = ("owner", "what")

    def __init__(self, owner: _HandleOwner, what: str) -> None:
        self.owner = owner
        self.what = what

    def __enter__(self) -> int:
        o = self.owner
        with o._state:
            if o._closed or o._handle is None:
                raise InvalidArgumentError(Status.INVALID_ARGUMENT, f"the {self.what} is closed")
            o._ops += 1
            return o._handle

    def __exit__(self, *exc: object) -> None:
        o = self.owner
        with o._state:
            o._ops -= 1
        o._maybe_free()
