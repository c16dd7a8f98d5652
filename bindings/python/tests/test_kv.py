"""API version 2 through the bindings, on the reference model: KV cache types,
context shift, truncation, forks, shared KV pools, batched decode and session
state (see tests/unit/kv_session_test.cpp for the C semantics)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import libllm
from libllm import ContextPolicy, KvType, Status, StopReason

PROMPT = "Once upon a time, there was a little girl who"


def ids(n: int, seed: int = 0) -> list[int]:
    """n ordinary token ids (no BOS/EOS), different per seed."""
    return [100 + (i * 37 + 11 + seed * 101) % 20000 for i in range(n)]


def rel_diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def fresh_logits(model: libllm.Model, tokens: list[int], **kw: Any) -> Any:
    with model.session(n_ctx=256, **kw) as s:
        s.eval(tokens)
        return s.logits_copy()


def head_dim(model: libllm.Model) -> int:
    return model.info.hidden_size // model.info.n_heads


@pytest.fixture(autouse=True)
def _needs_v2() -> None:
    if not libllm.capi.has_function("llm_session_fork"):
        pytest.skip(f"the loaded libllm ({libllm.library_path()}) predates API version 2")


@pytest.fixture
def pool(model: libllm.Model) -> Iterator[libllm.KvPool]:
    with model.kv_pool(512, kv_type="f32") as p:
        yield p


# ---- KV types and session parameters ----------------------------------------------------


@pytest.mark.parametrize(
    "kv,expect",
    [("f32", KvType.F32), ("f16", KvType.F16), ("BF16", KvType.BF16), ("int8", KvType.INT8),
     ("int4", KvType.INT4), (KvType.INT8, KvType.INT8), (5, KvType.INT4), ("default", KvType.F16)],
)
def test_kv_type_sizes_follow_the_header(model: libllm.Model, kv: Any, expect: KvType) -> None:
    i = model.info
    hd, per_layer = head_dim(model), 2 * i.n_kv_heads
    per_token = {
        KvType.F32: 4 * per_layer * hd, KvType.F16: 2 * per_layer * hd, KvType.BF16: 2 * per_layer * hd,
        KvType.INT8: per_layer * (hd + 2), KvType.INT4: per_layer * (hd // 2 + hd // 16),
    }[expect] * i.n_layers
    with model.session(n_ctx=100, kv_type=kv) as s:
        info = s.info
        assert info.kv_type is expect
        assert info.context_policy is ContextPolicy.STOP
        assert info.kv_bytes_per_token == per_token
        assert info.kv_bytes == per_token * 112  # 100 positions -> 7 pages of 16
        assert info.n_shifts == 0
        assert model.memory_required(n_ctx=100, kv_type=kv) == info.memory_bytes
        assert s.settings.kv_type == KvType.parse(kv)


def test_quantized_caches_still_predict(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    ref = fresh_logits(model, case["input_ids"], kv_type="f32")
    for kv, bound in (("f16", 1e-2), ("int8", 5e-2), ("int4", 0.25)):
        got = fresh_logits(model, case["input_ids"], kv_type=kv)
        assert rel_diff(got, ref) < bound, kv
        assert int(np.argmax(got)) == case["greedy_ids"][0], kv


def test_bad_kv_type_and_policy(model: libllm.Model) -> None:
    with pytest.raises(libllm.InvalidArgumentError, match="int3"):
        model.session(n_ctx=32, kv_type="int3")
    with pytest.raises(libllm.InvalidArgumentError) as e:
        model.session(n_ctx=32, kv_type=42)
    assert e.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(TypeError):
        model.session(n_ctx=32, kv_type=1.5)  # type: ignore[arg-type]
    with pytest.raises(libllm.InvalidArgumentError, match="context_policy"):
        model.session(n_ctx=32, context_policy="rotate")
    with pytest.raises(libllm.InvalidArgumentError):
        model.session(n_ctx=32, context_policy=7)
    # Negative n_keep is refused by the library itself (status and message).
    with pytest.raises(libllm.InvalidArgumentError) as e:
        model.session(n_ctx=32, context_policy="shift", n_keep=-1)
    assert "n_keep" in e.value.message
    with pytest.raises(TypeError):
        model.session(n_ctx=32, kv_pool=object())  # type: ignore[arg-type]
    assert str(KvType.INT8) == "int8" and str(ContextPolicy.SHIFT) == "shift"


# ---- context policy ------------------------------------------------------------------------


def test_context_shift_keeps_generating(model: libllm.Model) -> None:
    with model.session(n_ctx=64, kv_type="int8", context_policy="shift", n_keep=4) as s:
        assert s.info.context_policy is ContextPolicy.SHIFT
        s.eval(ids(60, 1))
        text = s.generate_text(max_tokens=150, temperature=0, ignore_eos=True)
        assert text
        assert s.stop_reason == StopReason.MAX_TOKENS
        info = s.info
        assert info.n_shifts >= 3
        assert info.n_tokens <= 64
        # More than the context minus the kept tokens cannot go in at once.
        with pytest.raises(libllm.ContextFullError):
            s.eval(ids(70, 2))
    # n_discard: each shift drops that many tokens.
    with model.session(n_ctx=64, context_policy=ContextPolicy.SHIFT, n_keep=1, n_discard=8) as s:
        s.eval(ids(64, 3))
        s.eval(ids(1, 4))
        assert s.info.n_shifts == 1
        assert s.n_tokens == 64 - 8 + 1
    # Without the policy a full context stops generation.
    with model.session(n_ctx=32) as s:
        s.eval(ids(30, 5))
        s.generate_text(max_tokens=10, ignore_eos=True)
        assert s.stop_reason == StopReason.CONTEXT_FULL
        assert s.info.n_shifts == 0


# ---- truncate ------------------------------------------------------------------------------


def test_truncate_then_continue_matches_a_fresh_session(model: libllm.Model) -> None:
    a, b = ids(40, 1), ids(30, 2)
    with model.session(n_ctx=128, kv_type="f32") as s:
        s.eval(a)
        s.truncate(25)
        assert s.n_tokens == 25
        with pytest.raises(libllm.InvalidArgumentError):
            s.logits  # dropped with the tail
        s.eval(b)
        assert rel_diff(s.logits, fresh_logits(model, a[:25] + b, kv_type="f32")) < 1e-4
        with pytest.raises(libllm.InvalidArgumentError) as e:
            s.truncate(1000)
        assert e.value.status == Status.INVALID_ARGUMENT and "1000" in e.value.message
        with pytest.raises(libllm.InvalidArgumentError):
            s.truncate(-1)
        assert s.n_tokens == 55
        s.truncate(55)  # no-op
        s.truncate(0)
        assert s.n_tokens == 0


def test_truncate_regenerates_the_reference(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    n = len(case["input_ids"])
    with model.session(n_ctx=256) as s:
        s.eval(case["input_ids"])
        first = s.generate_text(max_tokens=16, temperature=0, ignore_eos=True)
        s.generate_text(max_tokens=8, temperature=0.9, seed=3, ignore_eos=True)
        s.truncate(n)  # back to the prompt: generate re-evaluates its last token
        again = list(s.generate_pieces(max_tokens=16, temperature=0, ignore_eos=True))
        assert "".join(p.text for p in again) == first
        assert [p.token for p in again if p.token >= 0] == case["greedy_ids"][:16]


# ---- fork ----------------------------------------------------------------------------------


def test_fork_copies_context_and_continues_independently(model: libllm.Model) -> None:
    system = ids(40, 3)
    with model.session(n_ctx=128, kv_type="f32") as a:
        a.eval(system)
        with a.fork() as b, a.fork(n_ctx=96) as c:
            assert b.n_tokens == c.n_tokens == 40
            assert b.settings == a.settings and b.kv_pool is None
            assert c.info.n_ctx == 96 and c.info.kv_type is KvType.F32  # the source's type
            assert np.array_equal(b.logits, a.logits)
            tb, tc, ta = ids(30, 4), ids(25, 5), ids(20, 6)
            b.eval(tb)
            c.eval(tc)
            a.eval(ta)
            for s, t in ((a, ta), (b, tb), (c, tc)):
                assert rel_diff(s.logits, fresh_logits(model, system + t, kv_type="f32")) < 1e-4
        # A copied cache must keep the source's type.
        with pytest.raises(libllm.LlmError) as e:
            a.fork(kv_type="int8")
        assert e.value.status == Status.INVALID_ARGUMENT
        assert e.value.message


def test_fork_of_a_busy_session_is_refused(model: libllm.Model) -> None:
    with model.session(n_ctx=64) as s:
        gen = s.generate("def f():", max_tokens=8, temperature=0)
        next(gen)
        with pytest.raises(libllm.SessionBusyError):
            s.fork()
        gen.close()
        with s.fork() as f:
            assert f.n_tokens == s.n_tokens


def test_fork_shares_pool_pages_copy_on_write(model: libllm.Model, pool: libllm.KvPool) -> None:
    info = pool.info
    assert info.kv_type is KvType.F32 and info.page_tokens == 16 and info.n_pages == 32
    assert info.pages_used == info.pages_committed == info.pages_shared == 0
    assert info.pages_free == 32 and info.bytes > 0
    system = ids(40, 3)
    with pool.session(n_ctx=128) as a:
        assert a.kv_pool is pool and a.info.kv_bytes == 0 and a.info.kv_type is KvType.F32
        a.eval(system)
        assert pool.info.pages_used == 3
        b = a.fork()  # same pool and settings: shares the two full pages
        c = a.fork(n_ctx=128, kv_pool=pool)
        assert b.kv_pool is pool and c.kv_pool is pool
        info = pool.info
        assert info.pages_shared == 2 and info.pages_used == 5
        with a.fork(kv_pool=None) as own:  # a private copy
            assert own.kv_pool is None and own.info.kv_bytes > 0
            assert pool.info.pages_used == 5
            assert np.array_equal(own.logits, a.logits)
        tb, ta = ids(30, 4), ids(20, 6)
        b.eval(tb)
        b.truncate(20)  # into the shared prefix: copied before writing
        b.eval(tb[:10])
        a.eval(ta)
        assert rel_diff(a.logits, fresh_logits(model, system + ta, kv_type="f32")) < 1e-4
        assert rel_diff(b.logits, fresh_logits(model, system[:20] + tb[:10], kv_type="f32")) < 1e-4
        b.close()
        c.close()
    info = pool.info
    assert info.pages_used == 0 and info.pages_committed == 0


def test_pool_commitments_are_never_overdrawn(model: libllm.Model) -> None:
    with model.kv_pool(96, kv_type=KvType.F32) as pool:  # 6 pages
        a = pool.session(n_ctx=64)  # commits 4
        a.eval(ids(32, 7))
        b = a.fork(n_ctx=48)  # shares 2, commits 1
        c = a.fork(n_ctx=48)
        with pytest.raises(libllm.OutOfMemoryError, match="pages") as e:
            a.fork(n_ctx=48)
        assert e.value.status == Status.OUT_OF_MEMORY
        with pytest.raises(libllm.OutOfMemoryError):
            pool.session(n_ctx=32)
        b.eval(ids(16, 8))
        c.eval(ids(16, 8))
        with pytest.raises(libllm.ContextFullError):
            c.eval([5])
        with pytest.raises(libllm.OutOfMemoryError):
            b.truncate(20)  # the shared page's copy has no page to come from
        assert b.n_tokens == 48
        c.close()
        b.truncate(20)
        b.eval(ids(16, 8))
        for s in (a, b):
            s.close()
        assert pool.info.pages_used + pool.info.pages_committed == 0
    with pytest.raises(libllm.OutOfMemoryError) as e:
        model.kv_pool(1000, memory_limit=1000)
    assert "bytes" in e.value.message


def test_pool_lifetime(model_path: Path) -> None:
    model = libllm.Model(model_path)
    pool = libllm.KvPool(model, 128, kv_type="int8")
    assert pool.kv_type is KvType.INT8 and not pool.closed
    assert "KvPool" in repr(pool)
    s = model.session(n_ctx=64, kv_pool=pool, kv_type="f32")  # the pool's type wins
    assert s.info.kv_type is KvType.INT8
    assert model.memory_required(n_ctx=64, kv_pool=pool) < model.memory_required(n_ctx=64)
    pool.close()
    pool.close()  # idempotent
    assert pool.closed
    with pytest.raises(libllm.InvalidArgumentError, match="closed"):
        pool.info
    with pytest.raises(libllm.InvalidArgumentError, match="closed"):
        model.session(n_ctx=64, kv_pool=pool)
    s.eval(ids(20))  # the session keeps the pool's memory
    with s.fork() as f:  # same pool, no parameters: still fine
        f.eval([5])
    with pytest.raises(libllm.InvalidArgumentError, match="closed"):
        s.fork(n_ctx=32)  # would need the closed handle
    # A pool of another model (another load of the same file) is refused.
    other = libllm.Model(model_path)
    with other.kv_pool(64) as p2:
        with pytest.raises(libllm.InvalidArgumentError, match="another model"):
            model.session(n_ctx=32, kv_pool=p2)
    other.close()
    # Closing the model closes its pools and sessions.
    p3 = model.kv_pool(64)
    s3 = p3.session(n_ctx=32)
    model.close()
    assert p3.closed and s3.closed and s.closed


def test_pool_is_thread_safe(model: libllm.Model) -> None:
    with model.kv_pool(16 * 64, kv_type="f16") as pool:
        errors: list[BaseException] = []

        def work(seed: int) -> None:
            try:
                for _ in range(3):
                    with pool.session(n_ctx=64) as s:
                        s.eval(ids(20, seed))
                        pool.info
                        with s.fork() as f:
                            f.eval(ids(5, seed + 1))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert pool.info.pages_used == 0


# ---- decode_batch --------------------------------------------------------------------------


def test_decode_batch_matches_the_reference(model: libllm.Model, reference: dict[str, Any]) -> None:
    cases = reference["cases"]
    sessions = [model.session(n_ctx=128) for _ in cases]
    try:
        nxt = []
        for s, case in zip(sessions, cases):
            s.eval(case["input_ids"])
            nxt.append(s.sample(temperature=0))
        got: list[list[int]] = [[t] for t in nxt]
        for _ in range(31):
            model.decode_batch(sessions, nxt)
            nxt = [s.sample(temperature=0) for s in sessions]
            for g, t in zip(got, nxt):
                g.append(t)
        for g, case in zip(got, cases):
            assert g == case["greedy_ids"][:32], case["prompt"]
    finally:
        for s in sessions:
            s.close()


def test_decode_batch_matches_sessions_run_alone(model: libllm.Model) -> None:
    for kv in ("f32", "int4"):
        batch = [model.session(n_ctx=128, kv_type=kv) for _ in range(4)]
        alone = [model.session(n_ctx=128, kv_type=kv) for _ in range(4)]
        for i, (b, a) in enumerate(zip(batch, alone)):
            t = ids(10 + 7 * i, 20 + i)
            b.eval(t)
            a.eval(t)
        for step in range(4):
            nxt = np.array([100 + (step * 31 + i * 17) for i in range(4)], dtype=np.int64)
            libllm.decode_batch(batch, nxt)  # NumPy ids are accepted too
            for i in range(4):
                alone[i].eval([int(nxt[i])])
                assert rel_diff(batch[i].logits, alone[i].logits) < 1e-3, (kv, i)
        assert [s.n_tokens for s in batch] == [s.n_tokens for s in alone]
        for s in batch + alone:
            s.close()


def test_decode_batch_misuse_is_refused_before_evaluating(model: libllm.Model, model_path: Path) -> None:
    a, b = model.session(n_ctx=32), model.session(n_ctx=32)
    a.eval(ids(5))
    b.eval(ids(6))
    with pytest.raises(libllm.InvalidArgumentError, match="again"):
        libllm.decode_batch([a, a], [5, 6])
    with pytest.raises(libllm.InvalidArgumentError, match="2 sessions but 1 tokens"):
        libllm.decode_batch([a, b], [5])
    with pytest.raises(libllm.InvalidTokenError) as e:
        libllm.Session.decode_batch([a, b], [5, 10**6])
    assert e.value.status == Status.INVALID_TOKEN
    with pytest.raises(TypeError):
        libllm.decode_batch([a, "b"], [5, 6])  # type: ignore[list-item]
    libllm.decode_batch([], [])  # nothing to do
    # A session in use (an unfinished generate iterator) makes it refuse.
    gen = b.generate(max_tokens=4, temperature=0)
    next(gen)
    n_a = a.n_tokens
    with pytest.raises(libllm.SessionBusyError):
        libllm.decode_batch([a, b], [5, 6])
    gen.close()
    assert a.n_tokens == n_a
    a.decode_batch([a], [7])  # a's lock was released
    assert a.n_tokens == n_a + 1
    # More sessions than the first one's n_batch.
    small = model.session(n_ctx=32, n_batch=1)
    with pytest.raises(libllm.InvalidArgumentError, match="n_batch"):
        libllm.decode_batch([small, a], [5, 6])
    # A full context (stop policy); one of another model.
    full = model.session(n_ctx=16)
    full.eval(ids(16))
    with pytest.raises(libllm.ContextFullError):
        libllm.decode_batch([a, full], [5, 6])
    assert a.n_tokens == n_a + 1
    other = libllm.Model(model_path)
    o = other.session(n_ctx=32)
    with pytest.raises(libllm.InvalidArgumentError, match="not a session of this model"):
        model.decode_batch([a, o], [5, 6])
    with pytest.raises(libllm.InvalidArgumentError, match="one model"):
        libllm.decode_batch([a, o], [5, 6])
    other.close()
    with pytest.raises(libllm.InvalidArgumentError, match="closed"):
        libllm.decode_batch([a, o], [5, 6])
    # A shifting session is shifted instead.
    shifting = model.session(n_ctx=16, context_policy="shift")
    shifting.eval(ids(16))
    libllm.decode_batch([shifting, a], [5, 6])
    assert shifting.info.n_shifts == 1
    for s in (a, b, small, full, shifting):
        s.close()


# ---- session state -------------------------------------------------------------------------


@pytest.mark.parametrize("kv", ["f16", "int4"])
def test_save_restore_round_trips(model: libllm.Model, kv: str, tmp_path: Path) -> None:
    with model.session(n_ctx=128, kv_type=kv) as s, model.session(n_ctx=128, kv_type=kv) as r:
        s.eval(ids(45, 11))
        state = s.save_state()
        assert isinstance(state, bytes) and len(state) == s.state_size()
        r.restore_state(state)
        assert r.n_tokens == 45
        assert np.array_equal(r.logits, s.logits)
        u = ids(5, 12)
        s.eval(u)
        r.eval(u)
        assert np.array_equal(r.logits, s.logits)
        # bytearray and memoryview are taken too.
        r.restore_state(bytearray(state))
        r.restore_state(memoryview(state))
        assert r.n_tokens == 45
        r.eval(u)
        # Damaged states are refused and leave the session as it was.
        bad = bytearray(state)
        bad[len(bad) // 2] ^= 0x10
        with pytest.raises(libllm.FormatError, match="checksum") as e:
            r.restore_state(bad)
        assert e.value.status == Status.FORMAT
        with pytest.raises(libllm.FormatError):
            r.restore_state(state[:-1])
        with pytest.raises(libllm.FormatError):
            r.restore_state(b"")
        with pytest.raises(TypeError):
            r.restore_state("state")  # type: ignore[arg-type]
        assert r.n_tokens == 50
        # Another KV type, a too small context.
        with model.session(n_ctx=128, kv_type="int8" if kv == "f16" else "f16") as o:
            with pytest.raises(libllm.InvalidArgumentError):
                o.restore_state(state)
        with model.session(n_ctx=32, kv_type=kv) as small:
            with pytest.raises(libllm.ContextFullError):
                small.restore_state(state)
            # Through a file.
            path = tmp_path / "state.bin"
            s.save_state_file(path)
            assert path.is_file()
            with pytest.raises(libllm.ContextFullError):
                small.restore_state_file(path)
        with model.session(n_ctx=128, kv_type=kv) as f:
            f.restore_state_file(str(path))
            assert np.array_equal(f.logits, s.logits)
            with pytest.raises(libllm.LlmIOError) as e:
                f.restore_state_file(tmp_path / "missing.bin")
            assert e.value.status == Status.IO
            with pytest.raises(libllm.InvalidArgumentError):
                f.restore_state_file("")


def test_state_restores_generation(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    with model.session(n_ctx=256) as s:
        s.eval(case["input_ids"])
        state = s.save_state()
        first = s.generate_text(max_tokens=20, temperature=0, ignore_eos=True)
        s.restore_state(state)  # back to the prompt, logits included
        assert s.n_tokens == len(case["input_ids"])
        assert s.sample(temperature=0) == case["greedy_ids"][0]
        assert s.generate_text(max_tokens=20, temperature=0, ignore_eos=True) == first
    with model.session(n_ctx=256) as fresh:
        fresh.restore_state(state)
        ids_out = [p.token for p in fresh.generate_pieces(max_tokens=20, temperature=0, ignore_eos=True)
                   if p.token >= 0]
        assert ids_out == case["greedy_ids"][:20]


def test_closed_session_refuses_the_new_calls(model: libllm.Model, tmp_path: Path) -> None:
    s = model.session(n_ctx=32)
    s.close()
    for call in (lambda: s.truncate(0), s.fork, s.save_state, lambda: s.restore_state(b"x"),
                 lambda: s.save_state_file(tmp_path / "x"), s.state_size):
        with pytest.raises(libllm.InvalidArgumentError, match="closed"):
            call()
