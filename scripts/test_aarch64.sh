#!/usr/bin/env bash
# Cross-compiles libllm and its unit tests for aarch64 (Debian's
# g++-aarch64-linux-gnu, toolchains/aarch64-linux-gnu.cmake) and runs them
# under qemu-aarch64, so the NEON kernels are tested on every change.
#
#   scripts/test_aarch64.sh [BUILD_DIR]        (default: build-aarch64)
#
# What runs:
#  * the unit tests under qemu -cpu max, a CPU with the dot-product
#    extension: the kernel tests compare the scalar, neon and neon-dotprod
#    paths with each other and with float64 references, and check that the
#    detection finds dotprod. Also the tokenizer, model-file, converter,
#    quantizer, sampler, text-stream, thread-pool and chat-template tests.
#    Left out by default: JinjaRobustness.* and JinjaLimits.* (template
#    fuzzing and resource-limit tests of portable code, about 2 of the 4
#    minutes the suite takes under emulation; they run natively in
#    scripts/test.sh). The run is split into one gtest shard per core.
#  * the ISA-selection and quantized-kernel tests under -cpu cortex-a53, a
#    core without the dot-product extension: detection (getauxval
#    HWCAP_ASIMDDP) must fall back to plain neon, which is then tested.
#  * the aarch64 libllm.so must export only llm_* symbols.
# Not run by default: the model tests (forward passes of the converted
# reference checkpoints; LLM_AARCH64_MODEL_TESTS=1, below) - several minutes
# under emulation, beyond the CI budget. flatc, the only
# build-time generator, runs on the host. Timings under qemu say nothing
# about speed on ARM hardware.
#
# Environment:
#   LLM_QEMU_CPU        CPU model of the main run (default: max)
#   LLM_AARCH64_FILTER  gtest filter of the main run
#                       (default: -JinjaRobustness.*:JinjaLimits.*; '*' runs all)
#   LLM_AARCH64_MODEL_TESTS=1   also run the model tests (LLM_AARCH64_MODEL_FILTER,
#                       default -*Perplexity*: perplexity over the full evaluation
#                       texts would take most of an hour under emulation)
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
  -DCMAKE_BUILD_TYPE=Release -DLLM_TESTS=ON -DLLM_MIMALLOC=OFF -DLLM_CUDA=OFF >/dev/null
# Only what runs here: the unit test binary (it links the library's objects)
# and the shared library (its exported symbols are checked below).
cmake --build "$build" -j "$jobs" --target llm_unit_tests llm

echo "== exported symbols of the aarch64 libllm.so"
bad=$(aarch64-linux-gnu-nm -D --defined-only "$build/libllm.so" | awk '{print $NF}' | grep -v '^llm_' || true)
if [ -n "$bad" ]; then
  echo "libllm.so exports symbols outside llm_*:"; echo "$bad"; exit 1
fi

# Under qemu, LLM_TEST_EMULATED=1 turns off the tests' wall-clock limits.
export LLM_TEST_EMULATED=1
run() {  # run CPU ARGS...: the unit tests under qemu with that CPU model
  local cpu=$1; shift
  "$qemu" -cpu "$cpu" "$build/tests/llm_unit_tests" --gtest_brief=1 "$@"
}
# The main run in one gtest shard per core, side by side. -cpu max has the
# dot-product extension: the detection must find it.
cpu=${LLM_QEMU_CPU:-max}
[ "$cpu" = max ] && export LLM_TEST_EXPECT_BEST=neon-dotprod
echo "== qemu-aarch64 -cpu $cpu: unit tests, $jobs shards"
pids=()
for ((s = 0; s < jobs; s++)); do
  GTEST_TOTAL_SHARDS=$jobs GTEST_SHARD_INDEX=$s run "$cpu" \
    --gtest_filter="${LLM_AARCH64_FILTER:--JinjaRobustness.*:JinjaLimits.*}" >"$build/qemu-shard-$s.log" 2>&1 &
  pids+=($!)
done
failed=0
for ((s = 0; s < jobs; s++)); do
  wait "${pids[$s]}" || failed=1
  echo "-- shard $s"; grep -v '^Running main()' "$build/qemu-shard-$s.log" || true
done
[ "$failed" -eq 0 ] || { echo "test_aarch64: unit tests failed under qemu"; exit 1; }
unset LLM_TEST_EXPECT_BEST
echo "== qemu-aarch64 -cpu cortex-a53 (no dot product): ISA selection and quantized kernels"
LLM_TEST_EXPECT_BEST=neon run cortex-a53 --gtest_filter='Isa.*:MatmulQ.PanelsTailsAndOddGroups:MatmulQ.ExtremeValues:QuantizeActs.*'

# Optional (LLM_AARCH64_MODEL_TESTS=1): the model tests too - forward passes
# of the reference checkpoints of ../shared on the NEON kernels against the
# Hugging Face outputs. The checkpoints are converted by the host's
# llm-convert (LLM_HOST_BUILD, default build; built there if missing).
if [ "${LLM_AARCH64_MODEL_TESTS:-0}" = 1 ]; then
  host=${LLM_HOST_BUILD:-build}
  if [ ! -x "$host/llm-convert" ]; then
    cmake -S . -B "$host" -DCMAKE_BUILD_TYPE=Release -DLLM_CUDA=OFF >/dev/null
    cmake --build "$host" -j "$jobs" --target llm-convert
  fi
  cmake --build "$build" -j "$jobs" --target llm_model_tests
  cmake -DCONVERT="$host/llm-convert" -DSHARED="$(cd .. && pwd)/shared" -DWORK="$build/tests/work" \
    -P tests/convert_models.cmake
  echo "== qemu-aarch64 -cpu $cpu: model tests"
  "$qemu" -cpu "$cpu" "$build/tests/llm_model_tests" --gtest_brief=1 \
    --gtest_filter="${LLM_AARCH64_MODEL_FILTER:--*Perplexity*}"
fi
echo "test_aarch64: all passed"
