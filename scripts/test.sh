#!/usr/bin/env bash
# Builds libllm with its tests and runs them all: the C/C++ suite (ctest: unit,
# model, C API, examples), the Python bindings (pytest) and the Rust bindings
# (cargo test). Usage: scripts/test.sh [BUILD_DIR]      (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=${1:-build}
jobs=$(nproc 2>/dev/null || echo 2)
# With nvcc on the machine the CUDA backend is compiled too, for one
# architecture to keep this quick (LLM_CUDA_ARCHITECTURES: docs/cuda.md); its
# tests skip, saying so, without a GPU.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLM_TESTS=ON -DLLM_CUDA_ARCHITECTURES="${LLM_CUDA_ARCHITECTURES:-90}"
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" -j "$jobs" --output-on-failure
scripts/test_python.sh "$build"
scripts/test_rust.sh "$build"
