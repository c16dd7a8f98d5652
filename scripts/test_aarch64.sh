#!/usr/bin/env bash
# Cross-compiles libllm and its unit tests for aarch64 (Debian's
# g++-aarch64-linux-gnu, toolchains/aarch64-linux-gnu.cmake) and runs them
# under qemu-aarch64, so the NEON kernels are tested on every change.
#
#   scripts/test_aarch64.sh [BUILD_DIR]        (default: build-aarch64)
#
# Environment:
#   LLM_QEMU_CPU   CPU model for the main run (default: max, which has the
#                  dot-product extension: the tests then run the scalar, neon
#                  and neon-dotprod paths side by side).
#   LLM_AARCH64_FILTER  gtest filter of the main run (default: all unit tests).
#
# What runs: every unit test (kernels, quantized kernels, tokenizers, model
# file format, converter, sampler, ...) under -cpu max, then the ISA
# selection and quantized-kernel tests again under -cpu cortex-a53, a core
# without the dot-product extension, to check that the run-time detection
# (getauxval HWCAP_ASIMDDP) falls back to plain NEON. flatc (the only
# build-time generator) runs on the host. Model tests (forward passes of the
# reference checkpoints) are not run here: under emulation they take longer
# than the CI budget allows.
#
# Installs what it needs (idempotent; root or sudo): the cross compiler,
# qemu-user, and the arm64 multiarch -dev packages of the dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-aarch64}

sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "test_aarch64: adding the arm64 architecture to dpkg"
  $sudo dpkg --add-architecture arm64
  $sudo apt-get update -qq
fi
packages=(cmake pkg-config flatbuffers-compiler g++-aarch64-linux-gnu nlohmann-json3-dev
          libflatbuffers-dev:arm64 libxxhash-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64
          libgtest-dev:arm64)
command -v qemu-aarch64-static >/dev/null || command -v qemu-aarch64 >/dev/null || packages+=(qemu-user)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test_aarch64: installing ${missing[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64)

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE=toolchains/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DLLM_TESTS=ON -DLLM_MIMALLOC=OFF >/dev/null
# Only what runs here: the unit test binary (it links the library's objects)
# and the shared library (its exported symbols are checked below).
cmake --build "$build" -j "$jobs" --target llm_unit_tests llm

echo "== exported symbols of the aarch64 libllm.so"
bad=$(aarch64-linux-gnu-nm -D --defined-only "$build/libllm.so" | awk '{print $NF}' | grep -v '^llm_' || true)
if [ -n "$bad" ]; then
  echo "libllm.so exports symbols outside llm_*:"; echo "$bad"; exit 1
fi

run() {  # run CPU ARGS...: the unit tests under qemu with that CPU model
  local cpu=$1; shift
  echo "== qemu-aarch64 -cpu $cpu: $*"
  "$qemu" -cpu "$cpu" "$build/tests/llm_unit_tests" --gtest_brief=1 "$@"
}
run "${LLM_QEMU_CPU:-max}" --gtest_filter="${LLM_AARCH64_FILTER:-*}"
run cortex-a53 --gtest_filter='Isa.*:MatmulQ.PanelsTailsAndOddGroups:MatmulQ.ExtremeValues:QuantizeActs.*'
