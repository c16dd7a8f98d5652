"""The ctypes layer matches include/llm.h: every LLM_API function is bound with
the same parameter and return types, every struct has the same fields in the
same order (and, when a C compiler is at hand, the same size and offsets), and
the enums and constants agree. Needs no model."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

import libllm
from libllm import capi

from conftest import HEADER, have_compiler

pytestmark = pytest.mark.skipif(not HEADER.is_file(), reason=f"{HEADER} absent (not a libllm checkout)")


def _source() -> str:
    return HEADER.read_text()


def _defines() -> dict[str, str]:
    return dict(re.findall(r"^\s*#\s*define\s+(LLM_\w+)\s+(\S+)\s*$", _source(), re.M))


def _code() -> str:
    """The header without comments and preprocessor lines."""
    text = re.sub(r"/\*.*?\*/", " ", _source(), flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _norm(c_type: str) -> str:
    return " ".join(c_type.replace("*", " * ").split())


OPAQUE = {"llm_model", "llm_session", "llm_kv_pool"}
BASE: dict[str, Any] = {
    "void": None,
    "char": ctypes.c_char,
    "int": ctypes.c_int,
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "float": ctypes.c_float,
    "llm_token": ctypes.c_int32,
    "llm_status": ctypes.c_int,
    "llm_stream_fn": capi.llm_stream_fn,
}
BASE.update(capi.STRUCTS)


def ctype_of(c_type: str) -> Any:
    """The ctypes type that a C type from llm.h must be bound as."""
    words = _norm(c_type).split()
    const = "const" in words
    words = [w for w in words if w != "const"]
    stars = words.count("*")
    names = [w for w in words if w != "*"]
    assert len(names) == 1, f"cannot map C type {c_type!r}"
    base = names[0]
    if base in OPAQUE:  # handles travel as void pointers
        assert stars in (1, 2), c_type
        return ctypes.c_void_p if stars == 1 else ctypes.POINTER(ctypes.c_void_p)
    assert base in BASE, f"C type {base!r} has no mapping in the test"
    t = BASE[base]
    if stars == 0:
        return t
    assert stars == 1, c_type
    if base == "char":
        return ctypes.c_char_p if const else ctypes.POINTER(ctypes.c_char)
    if base == "void":
        return ctypes.c_void_p
    return ctypes.POINTER(t)


def _split_decl(decl: str) -> tuple[str, str]:
    """'const llm_token *tokens' -> ('const llm_token *', 'tokens')."""
    m = re.match(r"^(.*?)(\w+)\s*$", decl.strip(), re.S)
    assert m, decl
    return m.group(1), m.group(2)


def header_functions() -> dict[str, tuple[str, list[str]]]:
    out: dict[str, tuple[str, list[str]]] = {}
    for m in re.finditer(r"\bLLM_API\s+([^;(]+?)\s*\(([^)]*)\)\s*;", _code(), re.S):
        ret, name = _split_decl(m.group(1))
        params = [p.strip() for p in m.group(2).split(",")]
        if params == ["void"]:
            params = []
        out[name] = (ret, [_split_decl(p)[0] for p in params])
    return out


def header_structs() -> dict[str, list[tuple[str, str, int]]]:
    """struct name -> [(field, C type, array length or 0)]."""
    defines = _defines()
    out: dict[str, list[tuple[str, str, int]]] = {}
    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", _code(), re.S):
        assert m.group(1) == m.group(3)
        fields = []
        for decl in m.group(2).split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            arr = re.match(r"^(.*?)(\w+)\s*\[\s*(\w+)\s*\]$", decl)
            if arr:
                n = arr.group(3)
                fields.append((arr.group(2), arr.group(1), int(defines.get(n, n))))
            else:
                t, name = _split_decl(decl)
                fields.append((name, t, 0))
        out[m.group(1)] = fields
    return out


def header_enum(name: str) -> dict[str, int]:
    m = re.search(r"typedef\s+enum\s+" + name + r"\s*\{(.*?)\}\s*" + name + r"\s*;", _code(), re.S)
    assert m, f"enum {name} not found in llm.h"
    values = {}
    for entry in m.group(1).split(","):
        entry = entry.strip()
        if entry:
            k, v = (s.strip() for s in entry.split("="))
            values[k] = int(v)
    return values


# ---- functions -----------------------------------------------------------------------


def test_header_parses() -> None:
    fns = header_functions()
    assert len(fns) >= 27, sorted(fns)
    assert "llm_generate" in fns and "llm_model_load" in fns
    assert len(header_structs()) >= 5


def test_every_declared_function_is_bound() -> None:
    declared = set(header_functions())
    bound = set(capi.FUNCTIONS)
    assert declared - bound == set(), "declared in llm.h but not bound in _capi.FUNCTIONS"
    assert bound - declared == set(), "bound in _capi.FUNCTIONS but not declared in llm.h"


@pytest.mark.parametrize("name", sorted(header_functions()) if HEADER.is_file() else [])
def test_function_signature(name: str) -> None:
    ret, params = header_functions()[name]
    restype, argtypes, _required = capi.FUNCTIONS[name]
    assert len(argtypes) == len(params), f"{name}: {len(params)} parameters in llm.h"
    assert restype is ctype_of(ret), f"{name} returns {ret!r}"
    for i, (c_type, t) in enumerate(zip(params, argtypes)):
        assert t is ctype_of(c_type), f"{name} parameter {i}: {c_type!r} is bound as {t}"


def test_loaded_library_has_the_functions() -> None:
    cdll = capi.lib()
    missing = [n for n in header_functions() if not hasattr(cdll, n)]
    optional = {n for n, (_r, _a, req) in capi.FUNCTIONS.items() if not req}
    assert set(missing) <= optional, f"the loaded libllm lacks {missing}"
    for name in header_functions():
        if hasattr(cdll, name):
            fn = getattr(cdll, name)
            assert fn.argtypes == capi.FUNCTIONS[name][1]
            assert fn.restype is capi.FUNCTIONS[name][0]


# ---- structs -------------------------------------------------------------------------


def test_every_struct_is_mirrored() -> None:
    assert set(header_structs()) == set(capi.STRUCTS)


@pytest.mark.parametrize("name", sorted(capi.STRUCTS))
def test_struct_fields(name: str) -> None:
    want = header_structs()[name]
    got: list[tuple[str, Any]] = [(f[0], f[1]) for f in capi.STRUCTS[name]._fields_]
    assert [f for f, _t, _n in want] == [f for f, _t in got], f"{name}: field names/order differ"
    for (field, c_type, length), (_f, t) in zip(want, got):
        expect = ctype_of(c_type)
        if length:
            assert issubclass(t, ctypes.Array), f"{name}.{field} should be an array"
            arr: Any = t
            assert arr._length_ == length and arr._type_ is expect, f"{name}.{field}"
        else:
            assert t is expect, f"{name}.{field}: {c_type!r} mirrored as {t}"


def test_struct_layout_matches_the_c_compiler(tmp_path: Path) -> None:
    cc = have_compiler()
    if cc is None:
        pytest.skip("no C compiler to measure the C layout with")
    lines = []
    for name, fields in header_structs().items():
        lines.append(f'printf("{name} %zu\\n", sizeof({name}));')
        for field, _t, _n in fields:
            lines.append(f'printf("{name}.{field} %zu\\n", offsetof({name}, {field}));')
    src = tmp_path / "layout.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include \"llm.h\"\nint main(void) {\n"
                   + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", str(HEADER.parent), str(src), "-o", str(exe)], check=True)
    measured = dict(line.split() for line in subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True).stdout.splitlines())
    for name, struct in capi.STRUCTS.items():
        assert int(measured[name]) == ctypes.sizeof(struct), f"sizeof({name})"
        for f in struct._fields_:
            field = f[0]
            assert int(measured[f"{name}.{field}"]) == getattr(struct, field).offset, f"{name}.{field}"


# ---- enums and constants -------------------------------------------------------------


def test_status_enum() -> None:
    values = header_enum("llm_status")
    mirrored = {("LLM_OK" if s == libllm.Status.OK else f"LLM_ERR_{s.name}"): int(s) for s in libllm.Status}
    assert values == mirrored


def test_stop_reason_enum() -> None:
    values = header_enum("llm_stop_reason")
    assert values == {f"LLM_STOP_{s.name}": int(s) for s in libllm.StopReason}


def test_other_enums_and_constants() -> None:
    assert header_enum("llm_verify") == {"LLM_VERIFY_FULL": capi.VERIFY_FULL, "LLM_VERIFY_NONE": capi.VERIFY_NONE}
    assert header_enum("llm_tokenize_flags") == {
        "LLM_TOKENIZE_DEFAULT": capi.TOKENIZE_DEFAULT,
        "LLM_TOKENIZE_PARSE_SPECIAL_OFF": capi.TOKENIZE_PARSE_SPECIAL_OFF,
    }
    d = _defines()
    assert int(d["LLM_MAX_STOP_STRINGS"]) == capi.MAX_STOP_STRINGS
    assert int(d["LLM_KV_PAGE_TOKENS"]) == capi.KV_PAGE_TOKENS
    assert int(d["LLM_API_VERSION"]) >= capi.API_VERSION


def test_status_strings_come_from_the_library() -> None:
    for s in libllm.Status:
        want = "LLM_OK" if s == libllm.Status.OK else f"LLM_ERR_{s.name}"
        assert libllm.status_string(s) == want


def test_versions() -> None:
    d = _defines()
    assert libllm.version() == f"{d['LLM_VERSION_MAJOR']}.{d['LLM_VERSION_MINOR']}.{d['LLM_VERSION_PATCH']}"
    assert libllm.api_version() >= capi.API_VERSION


def test_kv_type_and_context_policy_enums() -> None:
    assert header_enum("llm_kv_type") == {f"LLM_KV_{k.name}": int(k) for k in libllm.KvType}
    assert header_enum("llm_kv_type") == {
        "LLM_KV_DEFAULT": capi.KV_DEFAULT, "LLM_KV_F32": capi.KV_F32, "LLM_KV_F16": capi.KV_F16,
        "LLM_KV_BF16": capi.KV_BF16, "LLM_KV_INT8": capi.KV_INT8, "LLM_KV_INT4": capi.KV_INT4,
    }
    assert header_enum("llm_context_policy") == {
        f"LLM_CONTEXT_{p.name}": int(p) for p in libllm.ContextPolicy
    }
    assert header_enum("llm_context_policy") == {
        "LLM_CONTEXT_STOP": capi.CONTEXT_STOP, "LLM_CONTEXT_SHIFT": capi.CONTEXT_SHIFT,
    }


def test_version_1_session_params_size() -> None:
    # What an API-version-1 library accepts as llm_session_params.struct_size.
    assert capi.SESSION_PARAMS_V1_SIZE == capi.llm_session_params.kv_type.offset
    names = [f[0] for f in capi.llm_session_params._fields_]
    assert names.index("kv_type") == 5 and names[-1] == "kv_pool"
