"""Model: metadata, tokenizer against the reference ids, chat template."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import libllm
from libllm import capi

from conftest import HF_MODEL, tool


def test_info(model: libllm.Model, reference: dict[str, Any]) -> None:
    info = model.info
    assert isinstance(info, libllm.ModelInfo)
    assert info.architecture == reference["arch"] == "llama"
    assert info.name == "tiny-llama-code"
    assert info.n_params == reference["params"]
    assert info.vocab_size == model.vocab_size == 32000
    assert (info.bos_token, info.eos_token) == (1, 2)
    assert info.n_layers > 0 and info.hidden_size > 0 and info.n_heads >= info.n_kv_heads > 0
    assert info.context_length >= 512 and info.weights_bytes > 0 and not info.vocab_only
    with pytest.raises(AttributeError):
        info.name = "x"  # type: ignore[misc]


def test_tokenize_matches_reference(model: libllm.Model, reference: dict[str, Any]) -> None:
    first = reference["cases"][0]
    assert first["prompt"] == "Once upon a time, there was a little girl who"
    assert model.tokenize(first["prompt"]) == first["input_ids"]
    for case in reference["cases"]:
        assert model.tokenize(case["prompt"]) == case["input_ids"], case["prompt"]
        assert model.tokenize(case["prompt"].encode("utf-8")) == case["input_ids"]


def test_tokenize_options(model: libllm.Model) -> None:
    text = "Once upon a time"
    with_bos = model.tokenize(text)
    assert with_bos[0] == model.info.bos_token
    assert model.tokenize(text, add_special=False) == with_bos[1:]
    assert model.tokenize("", add_special=False) == []
    special = model.tokenize("<s>", add_special=False)
    assert special == [model.info.bos_token]
    assert model.tokenize("<s>", add_special=False, parse_special=False) != special
    long = "word " * 5000  # more ids than the first buffer guess holds? (retry path)
    assert len(model.tokenize(long)) > 5000


def test_detokenize_and_pieces(model: libllm.Model, reference: dict[str, Any]) -> None:
    case = reference["cases"][0]
    ids = case["input_ids"] + case["greedy_ids"]
    text = model.detokenize(ids)
    assert text.startswith("<s>")  # special tokens kept, as Hugging Face does
    assert case["greedy_text"] in text
    assert model.detokenize([]) == ""
    assert model.detokenize_bytes(ids) == text.encode("utf-8")
    pieces = b"".join(model.token_to_piece(t) for t in case["input_ids"][1:])
    assert pieces.decode("utf-8").strip() == case["prompt"]
    import numpy as np

    assert model.detokenize(np.array(ids, dtype=np.int64)) == text


def test_is_eog(model: libllm.Model) -> None:
    assert model.is_eog(model.info.eos_token)
    assert not model.is_eog(model.info.bos_token)
    assert not model.is_eog(1000)


def test_concurrent_tokenization(model: libllm.Model, reference: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cases = reference["cases"] * 20
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: model.tokenize(c["prompt"]), cases))
    assert got == [c["input_ids"] for c in cases]


def test_context_manager_frees_handles(model_path: Path) -> None:
    with libllm.Model(model_path, verify=False) as m:
        with m.session(n_ctx=32) as s:
            s.eval(m.tokenize("hello"))
            assert s.n_tokens > 0
        assert s.closed and s._handle is None
        s2 = m.session(n_ctx=32)
    assert m.closed and m._handle is None
    assert s2.closed  # closing the model closes its sessions
    with pytest.raises(libllm.InvalidArgumentError):
        s2.eval([1])


def test_session_keeps_model_alive(model_path: Path) -> None:
    s = libllm.Model(model_path).session(n_ctx=32)  # no reference to the model kept
    gc.collect()
    s.eval([1, 450])
    assert s.logits.shape == (32000,)
    s.close()


def test_model_freed_after_its_last_session(model_path: Path) -> None:
    m = libllm.Model(model_path)
    s = m.session(n_ctx=32)
    m._closed = True  # as the garbage collector's arbitrary finalization order may leave it
    m._maybe_free()
    assert m._handle is not None  # a live session still uses it
    s.close()
    assert m._handle is None


# ---- chat template ---------------------------------------------------------------------


def test_chat_template_on_a_model_without_one(model: libllm.Model) -> None:
    if not capi.has_function("llm_chat_apply_template"):
        with pytest.raises(libllm.UnsupportedError):
            model.apply_chat_template([{"role": "user", "content": "hi"}])
        pytest.skip("the loaded libllm does not export llm_chat_apply_template yet")
    with pytest.raises(libllm.UnsupportedError):
        model.apply_chat_template([{"role": "user", "content": "hi"}])


TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def test_chat_template(tmp_path: Path) -> None:
    if not capi.has_function("llm_chat_apply_template"):
        pytest.skip("the loaded libllm does not export llm_chat_apply_template yet")
    convert = tool("llm-convert")
    if convert is None or not HF_MODEL.is_dir():
        pytest.skip("needs llm-convert and ../shared/models/tiny-llama-code")
    hf = tmp_path / "hf"
    hf.mkdir()
    for name in ("config.json", "tokenizer.json", "generation_config.json", "tokenizer.model"):
        if (HF_MODEL / name).exists():
            shutil.copy(HF_MODEL / name, hf / name)
    cfg = json.loads((HF_MODEL / "tokenizer_config.json").read_text())
    cfg["chat_template"] = TEMPLATE
    (hf / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = tmp_path / "chat.llm"
    subprocess.run([str(convert), str(hf), "-o", str(out), "--vocab-only"], check=True, capture_output=True)
    with libllm.Model(out) as m:
        assert m.info.vocab_only
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ünïcode"}]
        want = "<s><|system|>\nBe brief.</s>\n<|user|>\nHi ünïcode</s>\n"
        assert m.apply_chat_template(msgs, add_generation_prompt=False) == want
        assert m.apply_chat_template(msgs) == want + "<|assistant|>\n"
        long = [{"role": "user", "content": "x" * 10000}]  # larger than the first buffer
        assert len(m.apply_chat_template(long)) > 10000
        with pytest.raises(libllm.InvalidArgumentError):
            m.apply_chat_template([{"role": "user"}])
