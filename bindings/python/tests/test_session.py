"""Sessions: logits and greedy decoding against the reference, streaming,
early stops, cancellation, lifetime and threads."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import numpy as np
import pytest

import libllm
from libllm import StopReason

from conftest import reference_dir


def greedy(session: libllm.Session, prompt_ids: list[int], n: int) -> list[int]:
    """n greedy tokens by a session-level loop: eval + sample."""
    session.eval(prompt_ids)
    out = []
    for _ in range(n):
        t = session.sample(temperature=0)
        out.append(t)
        session.eval([t])
    return out


def continuation(model: libllm.Model, prompt_ids: list[int], new_ids: list[int]) -> str:
    """What streaming new_ids after prompt_ids must produce: the decoded text
    of the whole minus that of the prompt."""
    before = model.detokenize(prompt_ids)
    full = model.detokenize(prompt_ids + new_ids)
    assert full.startswith(before)
    return full[len(before):]


# ---- against the reference -------------------------------------------------------------


def test_greedy_matches_reference(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    with model.session(n_ctx=256) as s:
        got = greedy(s, case["input_ids"], 64)
        assert s.n_tokens == len(case["input_ids"]) + 64
    assert got == case["greedy_ids"]


def test_greedy_matches_reference_all_cases(model: libllm.Model, reference: dict[str, Any]) -> None:
    with model.session(n_ctx=256) as s:
        for case in reference["cases"]:
            s.reset()
            assert s.n_tokens == 0
            assert greedy(s, case["input_ids"], len(case["greedy_ids"])) == case["greedy_ids"], case["prompt"]


def test_logits_match_reference(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    ref = np.load(reference_dir() / case["logits_file"])
    assert ref.shape == (len(case["input_ids"]), model.info.vocab_size)
    tol = 2e-3 * float(np.abs(ref).max())
    with model.session(n_ctx=64, logits_all=True) as s:
        s.eval(case["input_ids"])
        last = s.logits
        assert last.dtype == np.float32 and last.shape == (model.info.vocab_size,)
        assert float(np.abs(last - ref[-1]).max()) <= tol
        for i in range(len(case["input_ids"])):
            assert float(np.abs(s.logits_at(i) - ref[i]).max()) <= tol, f"position {i}"
        assert np.array_equal(s.logits_at(-1), last)
        assert int(np.argmax(last)) == case["greedy_ids"][0]
        assert list(np.argsort(-last)[:5]) == case["top5_last"]


def test_streamed_text_equals_decode(model: libllm.Model, reference: dict[str, Any]) -> None:
    for case in reference["cases"][:2]:
        with model.session(n_ctx=256) as s:
            pieces = list(s.generate_pieces(case["prompt"], max_tokens=64, temperature=0, ignore_eos=True))
            assert s.stop_reason == StopReason.MAX_TOKENS
        tokens = [p.token for p in pieces if p.token >= 0]
        assert tokens == case["greedy_ids"]
        text = "".join(p.text for p in pieces)
        assert text == continuation(model, case["input_ids"], case["greedy_ids"])
        with model.session(n_ctx=256) as s:
            streamed = list(s.generate(case["prompt"], max_tokens=64, temperature=0, ignore_eos=True))
            assert all(streamed)  # generate() yields no empty pieces
            assert "".join(streamed) == text
            s.reset()
            assert s.generate_text(case["prompt"], max_tokens=64, temperature=0, ignore_eos=True) == text


def test_generate_from_token_ids(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    with model.session(n_ctx=256) as s:
        text = s.generate_text(case["input_ids"], max_tokens=16, temperature=0)
    assert text == continuation(model, case["input_ids"], case["greedy_ids"][:16])


# ---- logits views ---------------------------------------------------------------------------


def test_logits_is_a_read_only_view(session: libllm.Session) -> None:
    session.eval([1, 450])
    view = session.logits
    kept = session.logits_copy()
    assert not view.flags.writeable and not view.flags.owndata
    with pytest.raises(ValueError):
        view[0] = 1.0
    assert np.array_equal(view, kept)
    session.eval([29871])
    # the view shows the buffer's new content; the copy keeps the old one
    assert np.array_equal(view, session.logits)
    assert not np.array_equal(view, kept)
    with pytest.raises(libllm.InvalidArgumentError, match="logits_all"):
        session.logits_at(0)  # logits_all is off


# ---- sampling -------------------------------------------------------------------------------


def test_sampling_is_seeded(model: libllm.Model) -> None:
    runs = []
    for seed in (7, 7, 8):
        with model.session(n_ctx=128) as s:
            runs.append(s.generate_text("Once upon a time", max_tokens=24, seed=seed, temperature=1.0))
    assert runs[0] == runs[1]
    with model.session(n_ctx=128) as s:
        s.eval(model.tokenize("Once upon a time"))
        a = [s.sample(seed=3, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0) for _ in range(20)]
        s.reset()
        s.eval(model.tokenize("Once upon a time"))
        b = [s.sample(seed=3, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0) for _ in range(20)]
    assert a == b and len(set(a)) > 1  # reseeded by reset; the sequence moves on


def test_stop_string(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    full = continuation(model, case["input_ids"], case["greedy_ids"])
    stop = " small office"
    assert stop in full
    with model.session(n_ctx=256) as s:
        text = "".join(s.generate(case["prompt"], max_tokens=64, temperature=0, stop=[stop, "zzz"]))
        assert s.stop_reason == StopReason.STRING
    assert text == full[: full.index(stop)]
    with model.session(n_ctx=256) as s:  # a single string is one stop string, not characters
        assert s.generate_text(case["prompt"], max_tokens=64, temperature=0, stop=stop) == text


# ---- early stop, cancellation, lifetime ------------------------------------------------------------


def test_break_after_three_pieces(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    with model.session(n_ctx=256) as s:
        got = []
        for piece in s.generate_pieces(case["prompt"], max_tokens=64, temperature=0):
            got.append(piece)
            if len(got) == 3:
                break
        gc.collect()  # the abandoned iterator is closed (CPython closes it at once)
        assert s.stop_reason == StopReason.CALLBACK
        # exactly the pieces received are in the context
        assert s.n_tokens == len(case["input_ids"]) + 3
        assert [p.token for p in got] == case["greedy_ids"][:3]
        # the session stays usable and continues where the consumer stopped
        rest = s.generate_text(None, max_tokens=5, temperature=0)
        assert rest == continuation(model, case["input_ids"] + case["greedy_ids"][:3], case["greedy_ids"][3:8])
        s.eval([13])
        assert s.logits.shape == (model.info.vocab_size,)


def test_explicit_close_and_busy_session(session: libllm.Session) -> None:
    gen = session.generate("def main():", max_tokens=50, temperature=0)
    session.eval([1])  # not started yet: the session is free
    first = next(gen)
    assert isinstance(first, str)
    with pytest.raises(libllm.SessionBusyError):
        session.eval([450])  # the unfinished iterator holds the session
    with pytest.raises(libllm.SessionBusyError):
        _ = session.n_tokens
    with pytest.raises(libllm.SessionBusyError):
        next(session.generate("x"))
    gen.close()
    assert session.stop_reason == StopReason.CALLBACK
    session.eval([450])
    gen.close()  # idempotent
    with pytest.raises(StopIteration):
        next(gen)


def test_exception_in_consumer(session: libllm.Session) -> None:
    n0 = session.n_tokens

    def consume() -> None:
        for i, _piece in enumerate(session.generate("Once upon a time", max_tokens=50, temperature=0)):
            if i == 1:
                raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        consume()
    gc.collect()
    assert session.stop_reason == StopReason.CALLBACK
    assert session.n_tokens > n0
    assert session.generate_text(None, max_tokens=3, temperature=0) is not None


def test_abandoned_iterator_is_collected(session: libllm.Session) -> None:
    gen = session.generate("Once upon a time", max_tokens=50)
    next(gen)
    del gen
    gc.collect()
    session.reset()  # usable again: no worker left holding it


def test_close_session_while_iterating(model: libllm.Model) -> None:
    s = model.session(n_ctx=128)
    gen = s.generate("Once upon a time", max_tokens=50, temperature=0)
    next(gen)
    s.close()  # stops the worker first, then frees
    assert s.closed
    assert list(gen) == []  # the iterator just ends


def test_close_model_while_iterating(model_path: Any) -> None:
    m = libllm.Model(model_path)
    s = m.session(n_ctx=128)
    gen = s.generate("Once upon a time", max_tokens=50)
    next(gen)
    m.close()
    assert s.closed and m._handle is None
    assert list(gen) == []


def test_iterating_in_another_thread_then_closing(model: libllm.Model) -> None:
    # Consumer in one thread, close() from another: no deadlock, no crash.
    s = model.session(n_ctx=512)
    got: list[str] = []
    started = threading.Event()

    def consume() -> None:
        for piece in s.generate("Once upon a time", max_tokens=400, temperature=0, ignore_eos=True):
            got.append(piece)
            started.set()
            time.sleep(0.001)

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(30)
    s.close()
    t.join(30)
    assert not t.is_alive() and s.closed and got


def test_cancel_from_another_thread(model: libllm.Model) -> None:
    with model.session(n_ctx=256) as s:
        n = 0
        with pytest.raises(libllm.CancelledError) as e:
            for _piece in s.generate_pieces("Once upon a time", max_tokens=0, temperature=0, ignore_eos=True):
                n += 1
                if n == 2:  # cancel from another thread while the worker is parked
                    t = threading.Thread(target=s.cancel)
                    t.start()
                    t.join()
        assert n == 2
        assert e.value.status == libllm.Status.CANCELLED and e.value.message
        prompt_len = len(model.tokenize("Once upon a time"))
        assert s.n_tokens == prompt_len + 2  # the pieces delivered stay in the context
        s.eval([13])  # still usable: the flag is cleared by the next call

    with model.session(n_ctx=1024) as s:  # a call running on the calling thread
        timer = threading.Timer(0.05, s.cancel)
        timer.start()
        with pytest.raises(libllm.CancelledError):
            s.generate_text("Once upon a time", max_tokens=0, temperature=0, ignore_eos=True)
        timer.join()
        assert 0 < s.n_tokens < 1024


def test_sessions_on_one_model_in_two_threads(model: libllm.Model, reference: dict[str, Any]) -> None:
    cases = reference["cases"][:2]
    results: dict[int, Any] = {}

    def work(i: int) -> None:
        try:
            case = cases[i]
            with model.session(n_ctx=256) as s:
                ids = greedy(s, case["input_ids"], 32)
                s.reset()
                text = s.generate_text(case["prompt"], max_tokens=32, temperature=0, ignore_eos=True)
            results[i] = (ids, text)
        except BaseException as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, case in enumerate(cases):
        assert not isinstance(results[i], BaseException), results[i]
        ids, text = results[i]
        assert ids == case["greedy_ids"][:32]
        assert text == continuation(model, case["input_ids"], case["greedy_ids"][:32])


def test_streams_in_two_threads(model: libllm.Model, reference: dict[str, Any]) -> None:
    cases = reference["cases"][:2]
    out: dict[int, str] = {}

    def work(i: int) -> None:
        with model.session(n_ctx=256) as s:
            out[i] = "".join(s.generate(cases[i]["prompt"], max_tokens=32, temperature=0, ignore_eos=True))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, case in enumerate(cases):
        assert out[i] == continuation(model, case["input_ids"], case["greedy_ids"][:32])


def test_one_session_two_threads_is_refused_not_raced(model: libllm.Model) -> None:
    with model.session(n_ctx=1024) as s:
        errors: list[BaseException] = []
        go = threading.Event()

        def hammer() -> None:
            go.wait()
            for _ in range(50):
                try:
                    s.eval([450])
                except libllm.SessionBusyError:
                    pass
                except libllm.ContextFullError:
                    return
                except BaseException as e:
                    errors.append(e)
                    return

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join(60)
        assert not errors
        assert 0 < s.n_tokens <= 100


def test_session_info(model: libllm.Model) -> None:
    with model.session(n_ctx=256) as s:
        if not libllm.capi.has_function("llm_session_get_info"):
            with pytest.raises(libllm.UnsupportedError):
                _ = s.info
            pytest.skip("the loaded libllm does not export llm_session_get_info")
        s.eval([1, 450, 29871])
        info = s.info
        assert isinstance(info, libllm.SessionInfo)
        assert (info.n_ctx, info.n_tokens) == (256, 3)
        assert 0 < info.n_batch <= 256
        assert info.memory_bytes == model.memory_required(n_ctx=256)
        assert 0 < info.kv_bytes <= info.memory_bytes


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_while_streaming(model: libllm.Model) -> None:
    import os
    import signal

    with model.session(n_ctx=1024) as s:
        with pytest.raises(KeyboardInterrupt):
            for i, _piece in enumerate(s.generate("Once upon a time", max_tokens=0, ignore_eos=True)):
                if i == 1:  # SIGINT lands while the worker computes the next token
                    threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT)).start()
        s.reset()  # the worker was stopped and the session handed back
        s.eval([1, 450])
        with pytest.raises(KeyboardInterrupt):  # the calling thread waits; libllm works
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
            s.generate_text("Once upon a time", max_tokens=0, ignore_eos=True)
        s.eval([13])


def test_exit_with_a_suspended_iterator(model_path: Any) -> None:
    import subprocess
    import sys

    code = (
        "import libllm, sys\n"
        f"m = libllm.Model({str(model_path)!r})\n"
        "s = m.session(n_ctx=128)\n"
        "g = s.generate('Once upon a time', max_tokens=100)\n"
        "print(next(g) is not None, flush=True)\n"
        "sys.exit(3)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert r.stdout.strip() == "True"
