"""The raw C ABI of libllm (include/llm.h) through ctypes: structs, signatures and
locating the shared library.

This module is the whole foreign-function layer; everything above it is plain
Python. It is importable without the library: :func:`lib` loads it on first use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Optional, Union

#: LLM_API_VERSION these bindings were written against (the minimum accepted).
API_VERSION = 1
MAX_STOP_STRINGS = 8  # LLM_MAX_STOP_STRINGS
TOKENIZE_DEFAULT = 0  # LLM_TOKENIZE_DEFAULT
TOKENIZE_PARSE_SPECIAL_OFF = 1  # LLM_TOKENIZE_PARSE_SPECIAL_OFF
VERIFY_FULL = 0  # LLM_VERIFY_FULL
VERIFY_NONE = 1  # LLM_VERIFY_NONE
#: LLM_API_VERSION that added KV cache types, context shift, KV pools, forks,
#: truncation, batched decode and session state (the optional functions below).
API_VERSION_KV = 2
KV_DEFAULT = 0  # LLM_KV_DEFAULT (f16)
KV_F32 = 1  # LLM_KV_F32
KV_F16 = 2  # LLM_KV_F16
KV_BF16 = 3  # LLM_KV_BF16
KV_INT8 = 4  # LLM_KV_INT8
KV_INT4 = 5  # LLM_KV_INT4
KV_PAGE_TOKENS = 16  # LLM_KV_PAGE_TOKENS
CONTEXT_STOP = 0  # LLM_CONTEXT_STOP
CONTEXT_SHIFT = 1  # LLM_CONTEXT_SHIFT

llm_token = c_int32
llm_status = c_int  # C enums are ints on every ABI libllm targets
#: Opaque handles (llm_model *, llm_session *) travel as void pointers.
llm_model_p = c_void_p
llm_session_p = c_void_p
llm_kv_pool_p = c_void_p


class llm_model_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_threads", c_int32),
        ("device", c_char_p),
        ("verify", c_int32),
    ]


class llm_model_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("architecture", c_char_p),
        ("name", c_char_p),
        ("vocab_size", c_int32),
        ("context_length", c_int32),
        ("n_layers", c_int32),
        ("hidden_size", c_int32),
        ("n_heads", c_int32),
        ("n_kv_heads", c_int32),
        ("n_params", c_uint64),
        ("weights_bytes", c_uint64),
        ("bos_token", llm_token),
        ("eos_token", llm_token),
        ("vocab_only", c_int32),
        # Appended after the first layout: a library older than the header
        # reports a smaller struct_size and leaves them unset.
        ("decode_bytes_per_token", c_uint64),
        ("weights_type", c_char_p),
    ]


class llm_session_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_ctx", c_int32),
        ("n_batch", c_int32),
        ("logits_all", c_int32),
        ("memory_limit", c_uint64),
        # Since API version 2; a version-1 library is given struct_size up to
        # here (SESSION_PARAMS_V1_SIZE).
        ("kv_type", c_int32),
        ("context_policy", c_int32),
        ("n_keep", c_int32),
        ("n_discard", c_int32),
        ("kv_pool", llm_kv_pool_p),
    ]


#: struct_size of the first published llm_session_params (API version 1).
SESSION_PARAMS_V1_SIZE = llm_session_params.kv_type.offset


class llm_kv_pool_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("kv_type", c_int32),
        ("n_tokens", c_int32),
        ("memory_limit", c_uint64),
    ]


class llm_kv_pool_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("kv_type", c_int32),
        ("page_tokens", c_int32),
        ("n_pages", c_int64),
        ("pages_used", c_int64),
        ("pages_committed", c_int64),
        ("pages_shared", c_int64),
        ("bytes", c_uint64),
    ]


class llm_session_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_ctx", c_int32),
        ("n_batch", c_int32),
        ("n_tokens", c_int32),
        ("kv_bytes", c_uint64),
        ("memory_bytes", c_uint64),
        # Since API version 2 (an older library reports a smaller struct_size).
        ("kv_type", c_int32),
        ("context_policy", c_int32),
        ("kv_bytes_per_token", c_uint64),
        ("n_shifts", c_uint64),
    ]


class llm_generate_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("max_tokens", c_int32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("repeat_last_n", c_int32),
        ("seed", c_uint64),
        ("add_special", c_int32),
        ("parse_special", c_int32),
        ("stop", c_char_p * MAX_STOP_STRINGS),
        ("n_stop", c_int32),
        ("ignore_eos", c_int32),
    ]


class llm_chat_message(Structure):
    _fields_ = [
        ("role", c_char_p),
        ("content", c_char_p),
    ]


#: int (*llm_stream_fn)(const char *piece, size_t len, llm_token token, void *user_data)
#: `piece` is not NUL-terminated, so it is taken as a raw pointer (c_char_p would
#: stop at a NUL byte and copy).
llm_stream_fn = CFUNCTYPE(c_int, c_void_p, c_size_t, llm_token, c_void_p)

_P = POINTER

#: name -> (restype, argtypes, required). Every LLM_API function of llm.h is
#: here (tests/test_header.py checks that against the header). Optional ones
#: (added to the header after LLM_API_VERSION 1 without a version bump) are
#: bound when the loaded library exports them; so are those of API version 2,
#: so that a version-1 library still loads (the wrappers then raise
#: UnsupportedError for what it lacks).
FUNCTIONS: dict[str, tuple[Any, list[Any], bool]] = {
    "llm_version": (c_char_p, [], True),
    "llm_api_version": (c_int, [], True),
    "llm_status_string": (c_char_p, [llm_status], True),
    "llm_last_error": (c_char_p, [], True),
    "llm_model_params_init": (None, [_P(llm_model_params)], True),
    "llm_model_load": (llm_status, [c_char_p, _P(llm_model_params), _P(llm_model_p)], True),
    "llm_model_free": (None, [llm_model_p], True),
    "llm_model_get_info": (llm_status, [llm_model_p, _P(llm_model_info)], True),
    "llm_token_is_eog": (c_int, [llm_model_p, llm_token], True),
    "llm_tokenize": (
        llm_status,
        [llm_model_p, c_char_p, c_size_t, c_int, _P(llm_token), c_size_t, _P(c_size_t)],
        True,
    ),
    "llm_tokenize_ex": (
        llm_status,
        [llm_model_p, c_char_p, c_size_t, c_int, c_int, _P(llm_token), c_size_t, _P(c_size_t)],
        True,
    ),
    "llm_detokenize": (
        llm_status,
        [llm_model_p, _P(llm_token), c_size_t, _P(c_char), c_size_t, _P(c_size_t)],
        True,
    ),
    "llm_token_to_piece": (
        llm_status,
        [llm_model_p, llm_token, _P(c_char), c_size_t, _P(c_size_t)],
        True,
    ),
    "llm_session_params_init": (None, [_P(llm_session_params)], True),
    "llm_session_memory_required": (
        llm_status,
        [llm_model_p, _P(llm_session_params), _P(c_uint64)],
        True,
    ),
    "llm_session_create": (
        llm_status,
        [llm_model_p, _P(llm_session_params), _P(llm_session_p)],
        True,
    ),
    "llm_kv_pool_params_init": (None, [_P(llm_kv_pool_params)], False),
    "llm_kv_pool_create": (
        llm_status,
        [llm_model_p, _P(llm_kv_pool_params), _P(llm_kv_pool_p)],
        False,
    ),
    "llm_kv_pool_free": (None, [llm_kv_pool_p], False),
    "llm_kv_pool_get_info": (llm_status, [llm_kv_pool_p, _P(llm_kv_pool_info)], False),
    "llm_session_free": (None, [llm_session_p], True),
    "llm_session_reset": (llm_status, [llm_session_p], True),
    "llm_session_get_info": (llm_status, [llm_session_p, _P(llm_session_info)], False),
    "llm_session_n_tokens": (llm_status, [llm_session_p, _P(c_size_t)], True),
    "llm_session_eval": (llm_status, [llm_session_p, _P(llm_token), c_size_t], True),
    "llm_session_truncate": (llm_status, [llm_session_p, c_size_t], False),
    "llm_session_fork": (
        llm_status,
        [llm_session_p, _P(llm_session_params), _P(llm_session_p)],
        False,
    ),
    "llm_decode_batch": (llm_status, [_P(llm_session_p), _P(llm_token), c_size_t], False),
    "llm_session_state_size": (llm_status, [llm_session_p, _P(c_size_t)], False),
    "llm_session_save": (
        llm_status,
        [llm_session_p, c_void_p, c_size_t, _P(c_size_t)],
        False,
    ),
    "llm_session_restore": (llm_status, [llm_session_p, c_void_p, c_size_t], False),
    "llm_session_save_file": (llm_status, [llm_session_p, c_char_p], False),
    "llm_session_restore_file": (llm_status, [llm_session_p, c_char_p], False),
    "llm_session_logits": (_P(c_float), [llm_session_p], True),
    "llm_session_logits_at": (_P(c_float), [llm_session_p, c_int32], True),
    "llm_session_cancel": (None, [llm_session_p], True),
    "llm_generate_params_init": (None, [_P(llm_generate_params)], True),
    "llm_generate": (
        llm_status,
        [llm_session_p, c_char_p, _P(llm_generate_params), llm_stream_fn, c_void_p],
        True,
    ),
    "llm_session_stop_reason": (c_int, [llm_session_p], True),
    "llm_session_sample": (
        llm_status,
        [llm_session_p, _P(llm_generate_params), _P(llm_token)],
        True,
    ),
    "llm_chat_apply_template": (
        llm_status,
        [llm_model_p, _P(llm_chat_message), c_size_t, c_int, _P(c_char), c_size_t, _P(c_size_t)],
        False,
    ),
}

#: Structs mirrored from llm.h (tests/test_header.py checks them field by field).
STRUCTS: dict[str, type[Structure]] = {
    "llm_model_params": llm_model_params,
    "llm_model_info": llm_model_info,
    "llm_session_params": llm_session_params,
    "llm_kv_pool_params": llm_kv_pool_params,
    "llm_kv_pool_info": llm_kv_pool_info,
    "llm_session_info": llm_session_info,
    "llm_generate_params": llm_generate_params,
    "llm_chat_message": llm_chat_message,
}


# ---- locating and loading the library ---------------------------------------------

if sys.platform == "win32":
    LIBRARY_NAMES = ("llm.dll", "libllm.dll")
elif sys.platform == "darwin":
    LIBRARY_NAMES = ("libllm.dylib", "libllm.0.dylib")
else:
    LIBRARY_NAMES = ("libllm.so", "libllm.so.0")

_PACKAGE_DIR = Path(__file__).resolve().parent
#: Where `pip install` puts a copy of the library (see setup.py).
BUNDLED_DIR = _PACKAGE_DIR / "_lib"


def _source_tree_root() -> Optional[Path]:
    """The libllm checkout holding this package when it runs from the source
    tree (bindings/python/libllm), else None."""
    root = _PACKAGE_DIR.parents[2] if len(_PACKAGE_DIR.parents) > 2 else None
    if root is not None and (root / "include" / "llm.h").is_file():
        return root
    return None


class LibraryNotFoundError(ImportError):
    """libllm's shared library could not be found or loaded."""


def _first_existing(directory: Path) -> Optional[Path]:
    for name in LIBRARY_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def candidate_paths() -> list[tuple[str, Optional[str]]]:
    """The places searched, in order, as (description, path or None)."""
    out: list[tuple[str, Optional[str]]] = []
    env = os.environ.get("LIBLLM_PATH")
    if env:
        p = Path(env)
        found = _first_existing(p) if p.is_dir() else p
        out.append((f"LIBLLM_PATH={env}", str(found) if found is not None else None))
    else:
        out.append(("LIBLLM_PATH: not set", None))
    bundled = _first_existing(BUNDLED_DIR)
    out.append((f"bundled copy in {BUNDLED_DIR}", str(bundled) if bundled else None))
    root = _source_tree_root()
    if root is not None:
        built = _first_existing(root / "build")
        out.append((f"source tree build {root / 'build'}", str(built) if built else None))
    else:
        out.append(("source tree build: the package is not in a libllm checkout", None))
    system = ctypes.util.find_library("llm")
    out.append(("system loader, ctypes.util.find_library('llm')", system))
    return out


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None


def _bind(cdll: ctypes.CDLL, path: str) -> None:
    missing = []
    for name, (restype, argtypes, required) in FUNCTIONS.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            if required:
                missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise LibraryNotFoundError(
            f"{path} is not a usable libllm: it lacks {', '.join(missing)}"
        )
    api = int(cdll.llm_api_version())
    if api < API_VERSION:
        raise LibraryNotFoundError(
            f"{path} implements LLM_API_VERSION {api}; these bindings need >= {API_VERSION}"
        )


def load_library(path: Union[str, os.PathLike[str], None] = None) -> ctypes.CDLL:
    """Load libllm (once per process) and return it.

    With ``path`` that file (or a directory holding it) is loaded. Otherwise
    the search order is: the ``LIBLLM_PATH`` environment variable (a file or
    a directory), a copy bundled into the installed package, ``build/`` of the
    libllm checkout when running from the source tree, the system loader.
    Raises :class:`LibraryNotFoundError` naming every place tried.
    """
    global _lib, _lib_path
    with _lock:
        if _lib is not None:
            if path is not None and _lib_path is not None:
                p = Path(path)
                want = _first_existing(p) if p.is_dir() else p
                if want is None or os.path.realpath(want) != os.path.realpath(_lib_path):
                    raise LibraryNotFoundError(
                        f"libllm is already loaded from {_lib_path}; cannot load {path}"
                    )
            return _lib
        if path is not None:
            p = Path(path)
            found = _first_existing(p) if p.is_dir() else p
            tried: list[tuple[str, Optional[str]]] = [
                (f"path argument {path}", str(found) if found is not None else None)
            ]
        else:
            tried = candidate_paths()
        errors: list[str] = []
        explicit = path is not None or bool(os.environ.get("LIBLLM_PATH"))
        for i, (desc, cand) in enumerate(tried):
            # An explicit choice (argument or LIBLLM_PATH) that fails is an
            # error, not a hint to go on looking elsewhere.
            stop_here = explicit and i == 0
            if cand is None:
                errors.append(f"  - {desc}" + ("" if ":" in desc else ": no library found"))
                if stop_here:
                    break
                continue
            if (os.sep in cand or cand.startswith(".")) and not os.path.isfile(cand):
                errors.append(f"  - {desc}: {cand} does not exist")
                if stop_here:
                    break
                continue
            try:
                cdll = ctypes.CDLL(cand)
                _bind(cdll, cand)
            except (OSError, LibraryNotFoundError) as e:
                errors.append(f"  - {desc}: {cand} cannot be used: {e}")
                if stop_here:
                    break
                continue
            _lib = cdll
            _lib_path = cand
            return cdll
        raise LibraryNotFoundError(
            "cannot find libllm's shared library. Tried:\n"
            + "\n".join(errors)
            + "\nBuild it (cmake -S . -B build && cmake --build build) and set "
            "LIBLLM_PATH to build/libllm.so (or its directory)."
        )


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use)."""
    cdll = _lib
    return cdll if cdll is not None else load_library()


def library_path() -> Optional[str]:
    """Path (or loader name) of the loaded library; None before loading."""
    return _lib_path


def has_function(name: str) -> bool:
    """Whether the loaded library exports ``name`` (optional functions)."""
    return hasattr(lib(), name)


def require(name: str, what: str) -> None:
    """Raise UnsupportedError when the loaded library lacks ``name`` (a
    function added after API version 1)."""
    if not has_function(name):
        from ._errors import Status, UnsupportedError

        raise UnsupportedError(
            Status.UNSUPPORTED,
            f"{what} needs libllm API version {API_VERSION_KV}; the loaded library "
            f"({library_path()}, API version {int(lib().llm_api_version())}) has no {name}",
        )


def last_error() -> str:
    """llm_last_error() of the calling thread."""
    msg = lib().llm_last_error()
    return msg.decode("utf-8", "replace") if msg else ""
