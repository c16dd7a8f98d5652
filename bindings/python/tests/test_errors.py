"""Errors: status codes, thread-local messages, misuse of handles, the library
search. The first group needs no model."""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import libllm
from libllm import Status, capi

# ---- without a model ---------------------------------------------------------------


def test_missing_file_is_io_error(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.llm"
    with pytest.raises(libllm.LlmIOError) as e:
        libllm.Model(missing)
    assert e.value.status == Status.IO
    assert isinstance(e.value, libllm.LlmError)
    assert e.value.message, "llm_last_error() should say what failed"
    assert "does-not-exist.llm" in e.value.message
    assert str(e.value).startswith("LLM_ERR_IO: ")


@pytest.mark.parametrize("content", [b"", b"not a model file at all" * 100])
def test_garbage_file_is_format_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.llm"
    bad.write_bytes(content)
    with pytest.raises(libllm.LlmError) as e:
        libllm.Model(bad)
    assert e.value.status in (Status.FORMAT, Status.IO)
    assert e.value.message
    if content:
        assert isinstance(e.value, libllm.FormatError)


def test_bad_arguments_are_checked_before_c() -> None:
    with pytest.raises(libllm.InvalidArgumentError):
        libllm.Model("x.llm", n_threads=2**40)
    with pytest.raises(libllm.InvalidArgumentError):
        libllm.Model("x\0y.llm")
    with pytest.raises(TypeError):
        libllm.Model("x.llm", n_threads="4")  # type: ignore[arg-type]


def test_c_rejects_out_of_range_params(tmp_path: Path) -> None:
    # Range checks the C side makes (n_threads in [0, 1024]) come back as LlmError.
    with pytest.raises(libllm.InvalidArgumentError) as e:
        libllm.Model(tmp_path / "x.llm", n_threads=5000)
    assert e.value.status == Status.INVALID_ARGUMENT
    assert "n_threads" in e.value.message


def test_null_handles_through_the_raw_api() -> None:
    lib = capi.lib()
    info = capi.llm_model_info()
    info.struct_size = ctypes.sizeof(info)
    assert lib.llm_model_get_info(None, ctypes.byref(info)) == Status.INVALID_ARGUMENT
    assert "NULL" in capi.last_error()
    assert lib.llm_session_eval(None, None, 0) == Status.INVALID_ARGUMENT
    assert lib.llm_session_reset(None) == Status.INVALID_ARGUMENT
    n = ctypes.c_size_t()
    assert lib.llm_tokenize(None, b"x", 1, 1, None, 0, ctypes.byref(n)) == Status.INVALID_ARGUMENT
    assert lib.llm_session_logits(None) is None or not lib.llm_session_logits(None)
    assert lib.llm_token_is_eog(None, 0) == 0
    lib.llm_model_free(None)  # NULL is ignored
    lib.llm_session_free(None)
    lib.llm_session_cancel(None)
    out = ctypes.c_void_p()
    assert lib.llm_model_load(None, None, ctypes.byref(out)) == Status.INVALID_ARGUMENT
    assert out.value is None


def test_struct_size_is_checked() -> None:
    lib = capi.lib()
    params = capi.llm_model_params()
    lib.llm_model_params_init(ctypes.byref(params))
    assert params.struct_size == ctypes.sizeof(params)
    params.struct_size = 3
    out = ctypes.c_void_p()
    assert lib.llm_model_load(b"x.llm", ctypes.byref(params), ctypes.byref(out)) == Status.INVALID_ARGUMENT
    assert "struct_size" in capi.last_error()


def test_params_init_defaults() -> None:
    lib = capi.lib()
    g = capi.llm_generate_params()
    lib.llm_generate_params_init(ctypes.byref(g))
    assert g.struct_size == ctypes.sizeof(g)
    assert (g.max_tokens, g.top_k, g.repeat_last_n, g.add_special, g.parse_special) == (256, 40, 64, 1, 1)
    assert g.temperature == pytest.approx(0.8) and g.top_p == pytest.approx(0.95)
    s = capi.llm_session_params()
    lib.llm_session_params_init(ctypes.byref(s))
    assert s.struct_size == ctypes.sizeof(s) and s.n_ctx == 0


def test_last_error_is_per_thread() -> None:
    lib = capi.lib()
    lib.llm_session_reset(None)
    mine = capi.last_error()
    seen: list[str] = []

    def other() -> None:
        seen.append(capi.last_error())  # nothing failed on this thread yet
        out = ctypes.c_void_p()
        lib.llm_model_load(b"/nonexistent/other-thread.llm", None, ctypes.byref(out))
        seen.append(capi.last_error())

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen[0] == ""
    assert "other-thread.llm" in seen[1]
    assert capi.last_error() == mine


def test_error_classes() -> None:
    e = libllm.LlmError(Status.CONTEXT_FULL, "full")
    assert e.status is Status.CONTEXT_FULL and e.message == "full"
    assert str(e) == "LLM_ERR_CONTEXT_FULL: full"
    copy = pickle.loads(pickle.dumps(libllm.ContextFullError(Status.CONTEXT_FULL, "x")))
    assert type(copy) is libllm.ContextFullError and copy.message == "x"
    assert issubclass(libllm.InvalidArgumentError, ValueError)
    assert issubclass(libllm.SessionBusyError, RuntimeError)
    from libllm._errors import error_for

    assert type(error_for(Status.FORMAT, "m")) is libllm.FormatError
    assert type(error_for(Status.CANCELLED, "m")) is libllm.CancelledError
    assert type(error_for(99, "m")) is libllm.LlmError


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full)


def test_library_not_found_lists_the_places_tried(tmp_path: Path) -> None:
    r = _run_python(
        "import libllm\n"
        "try:\n    libllm.load_library()\n"
        "except ImportError as e:\n    print(type(e).__name__); print(e)\n",
        LIBLLM_PATH=str(tmp_path / "nowhere" / "libllm.so"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("LibraryNotFoundError"), r.stdout
    assert "LIBLLM_PATH=" in r.stdout and "nowhere" in r.stdout


def test_library_path_may_name_a_directory() -> None:
    path = capi.library_path()
    if path is None or os.sep not in path:
        pytest.skip("the library was found by the system loader, not by path")
    r = _run_python("import libllm; print(libllm.version()); print(libllm.library_path())",
                    LIBLLM_PATH=str(Path(path).parent))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == libllm.version()


def test_import_needs_no_library() -> None:
    # Importing the package (e.g. for its types) does not load the library.
    r = _run_python("import libllm, libllm.capi as c; print(c.library_path())",
                    LIBLLM_PATH="/nonexistent")
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr


# ---- with the model ------------------------------------------------------------------


def test_closed_model_and_session(model_path: Path) -> None:
    m = libllm.Model(model_path)
    s = m.session(n_ctx=64)
    m.close()
    assert m.closed and s.closed
    with pytest.raises(libllm.InvalidArgumentError, match="closed"):
        m.tokenize("x")
    with pytest.raises(libllm.InvalidArgumentError, match="closed"):
        m.session()
    with pytest.raises(libllm.InvalidArgumentError, match="closed"):
        s.eval([1])
    with pytest.raises(libllm.InvalidArgumentError, match="closed"):
        _ = s.logits
    m.close()  # idempotent
    s.close()
    s.cancel()  # harmless on a closed session


def test_bad_tokens(session: libllm.Session, model: libllm.Model) -> None:
    with pytest.raises(libllm.InvalidTokenError) as e:
        session.eval([1, model.info.vocab_size])
    assert e.value.status == Status.INVALID_TOKEN and e.value.message
    with pytest.raises(libllm.InvalidTokenError):
        session.eval([2**40])  # refused before C, not wrapped around
    with pytest.raises(libllm.InvalidTokenError):
        model.token_to_piece(-5)
    with pytest.raises(TypeError):
        session.eval("hello")  # type: ignore[arg-type]
    session.eval([])  # nothing to do, not an error


def test_context_full(model: libllm.Model) -> None:
    with model.session(n_ctx=16) as s:
        s.eval(list(range(10, 20)))
        with pytest.raises(libllm.ContextFullError) as e:
            s.eval(list(range(100, 110)))
        assert e.value.status == Status.CONTEXT_FULL
        assert s.n_tokens == 10  # nothing appended
        # generation stops at a full context without an error
        text = s.generate_text(None, max_tokens=100, temperature=0)
        assert s.stop_reason == libllm.StopReason.CONTEXT_FULL
        assert s.n_tokens == 16 and isinstance(text, str)


def test_nothing_evaluated(session: libllm.Session) -> None:
    with pytest.raises(libllm.InvalidArgumentError, match="evaluate"):
        _ = session.logits
    with pytest.raises(libllm.InvalidArgumentError):
        session.sample()
    with pytest.raises(libllm.InvalidArgumentError):
        session.logits_at(0)


def test_generate_argument_errors(session: libllm.Session) -> None:
    with pytest.raises(libllm.InvalidArgumentError, match="stop strings"):
        session.generate("x", stop=[str(i) for i in range(9)])
    with pytest.raises(libllm.InvalidArgumentError, match="NUL"):
        session.generate("a\0b")
    with pytest.raises(libllm.InvalidArgumentError):
        session.generate("x", seed=-1)
    with pytest.raises(libllm.InvalidArgumentError) as e:  # checked by C
        session.generate_text("x", repeat_penalty=0)
    assert "repeat_penalty" in e.value.message
    # nothing to start from (no prompt, no BOS, empty session): C reports it
    # from the iteration, since generation starts at the first next()
    gen = session.generate("", add_special=False)
    with pytest.raises(libllm.InvalidArgumentError, match="empty"):
        next(gen)
    assert session.n_tokens == 0


def test_memory_limit(model: libllm.Model) -> None:
    need = model.memory_required(n_ctx=128)
    assert need > 0
    with model.session(n_ctx=128, memory_limit=need) as s:
        s.eval([1, 2, 3])
    with pytest.raises(libllm.OutOfMemoryError) as e:
        model.session(n_ctx=128, memory_limit=need - 1)
    assert e.value.message


def test_loading_after_other_cxx_modules(model_path: Path) -> None:
    # NumPy loads libstdc++ before libllm here. libllm must not bring an
    # allocator that replaces operator new/delete for part of the process
    # (an earlier build linked libmimalloc.so and crashed in exactly this way).
    r = _run_python(
        "import numpy, libllm\n"
        f"m = libllm.Model({str(model_path)!r})\n"
        "s = m.session(n_ctx=64)\n"
        "print(s.generate_text('Once upon a time', max_tokens=8, temperature=0) != '')\n"
    )
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert r.stdout.strip() == "True"
