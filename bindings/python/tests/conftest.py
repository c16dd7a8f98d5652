"""Fixtures: the libllm checkout, the converted reference model and its
reference outputs.

The model is $LIBLLM_TEST_MODEL, or tests/work/tiny-llama-code-bf16.llm (made by
the C++ test fixture) of the build holding the loaded library or of build/; when absent it is converted here from
../shared/models/tiny-llama-code with build/llm-convert. Reference data come
from ../shared/models/tiny-llama-code/reference (or $LIBLLM_TEST_REFERENCE).
Tests needing them skip, saying what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import libllm

REPO = Path(__file__).resolve().parents[3]
HEADER = REPO / "include" / "llm.h"
SHARED = REPO.parent / "shared"
HF_MODEL = SHARED / "models" / "tiny-llama-code"


def reference_dir() -> Path:
    env = os.environ.get("LIBLLM_TEST_REFERENCE")
    return Path(env) if env else HF_MODEL / "reference"


def library_dir() -> Optional[Path]:
    libllm.load_library()
    path = libllm.library_path()
    return Path(path).resolve().parent if path and os.sep in path else None


def tool(name: str) -> Optional[Path]:
    """A libllm executable (llm-convert...) beside the loaded library or in build/."""
    for d in (library_dir(), REPO / "build"):
        if d is not None and (d / name).is_file():
            return d / name
    return None


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"libllm package: {Path(libllm.__file__).parent}"]
    try:
        libllm.load_library()
        lines.append(f"libllm library: {libllm.library_path()} (version {libllm.version()}, "
                     f"API {libllm.api_version()})")
    except ImportError as e:
        lines.append(f"libllm library: NOT FOUND: {e}")
    return lines


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("LIBLLM_TEST_MODEL")
    if env:
        if not Path(env).is_file():
            pytest.skip(f"LIBLLM_TEST_MODEL={env} does not exist")
        return Path(env)
    name = "tiny-llama-code-bf16.llm"
    for build in (library_dir(), REPO / "build"):  # the build the library comes from first
        if build is not None and (build / "tests" / "work" / name).is_file():
            return build / "tests" / "work" / name
    built = REPO / "build" / "tests" / "work" / name
    convert = tool("llm-convert")
    if not HF_MODEL.is_dir():
        pytest.skip(f"reference model absent: neither {built} nor {HF_MODEL} (../shared) exists")
    if convert is None:
        pytest.skip(f"{built} absent and no llm-convert to make it from {HF_MODEL}")
    out = tmp_path_factory.mktemp("model") / "tiny-llama-code-bf16.llm"
    subprocess.run([str(convert), str(HF_MODEL), "-o", str(out), "--dtype", "bf16"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    path = reference_dir() / "reference.json"
    if not path.is_file():
        pytest.skip(f"reference outputs absent: {path} (../shared) does not exist")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture(scope="session")
def model(model_path: Path) -> Iterator[libllm.Model]:
    m = libllm.Model(model_path)
    yield m
    m.close()


@pytest.fixture
def session(model: libllm.Model) -> Iterator[libllm.Session]:
    with model.session(n_ctx=512) as s:
        yield s


def have_compiler() -> Optional[str]:
    for cc in ("cc", "gcc", "clang"):
        if shutil.which(cc):
            return cc
    return None
