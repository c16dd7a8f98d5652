#!/usr/bin/env bash
# Runs the tests under sanitizers (the presets of CMakePresets.json):
#   asan      AddressSanitizer + UndefinedBehaviorSanitizer (clang-14,
#             build-asan/, the tree the fuzzers are built in too): the whole
#             ctest suite except the allocation-counting test (it interposes
#             malloc, which no sanitizer allows) and the two perplexity tests
#             (minutes each under ASan; the logits and greedy-text tests run
#             the same forward pass). The AVX2 kernels are built without UBSan
#             (it triples their compile time; their scalar twins keep it,
#             and all of them keep ASan). The model tests link the
#             reference models an ordinary build already converted
#             (LLM_BUILD/tests/work) instead of converting them again under
#             ASan; without one they convert, and without ../shared they skip.
#   tsan      ThreadSanitizer (clang-14, build-tsan/): every test labelled
#             `concurrency` (sessions on several threads sharing a model,
#             cancellation from another thread, the thread pool).
#   valgrind  memcheck on the C API test of the ordinary build (LLM_BUILD,
#             default build/, as scripts/test.sh leaves it), on the model its
#             fixture converted. Skipped, saying so, when that build or model
#             is absent.
# Usage: scripts/sanitizers.sh [asan] [tsan] [valgrind]   (default: all three)
# Environment: LLM_SANITIZER_JOBS (parallel jobs, default 2), LLM_BUILD (the
# ordinary build, default build). Prints the wall and CPU time of each part;
# exits non-zero if any part fails. Installs what it needs (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(asan tsan valgrind)
jobs=${LLM_SANITIZER_JOBS:-2}
build=${LLM_BUILD:-build}

# ---- dependencies -----------------------------------------------------------------
scripts/install-deps.sh
apt_install() {  # package...: installs those not installed yet
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "sanitizers.sh: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
for part in "${parts[@]}"; do
  case "$part" in
    asan | tsan) apt_install clang-14 libclang-rt-14-dev ;;
    valgrind) apt_install valgrind ;;
    *) echo "usage: $0 [asan] [tsan] [valgrind]" >&2; exit 2 ;;
  esac
done

# ---- bookkeeping ------------------------------------------------------------------
timings=()
failed=()
times_file=$(mktemp)
trap 'rm -f "$times_file"' EXIT
cpu_seconds() {  # user + sys of this shell's finished children so far ("times" must run in this shell)
  awk 'NR == 2 { for (i = 1; i <= 2; ++i) { split($i, t, /m|s/); s += t[1] * 60 + t[2] } printf "%.0f", s }' "$times_file"
}
run_part() {  # name command...
  local name=$1 start=$SECONDS cpu0 cpu1 rc=0
  shift
  echo "==== $name"
  times >"$times_file"
  cpu0=$(cpu_seconds)
  "$@" || rc=$?
  times >"$times_file"
  cpu1=$(cpu_seconds)
  local verdict=""
  if [ $rc -ne 0 ]; then
    verdict=" (FAILED, exit $rc)"
    failed+=("$name")
  fi
  timings+=("$name: $((SECONDS - start)) s wall, $((cpu1 - cpu0)) s CPU$verdict")
  return 0
}

# ---- parts --------------------------------------------------------------------------
asan_build() {
  local reuse=""
  [ -f "$build/tests/work/tiny-llama-code-f32.llm" ] && reuse="$PWD/$build/tests/work"
  cmake --preset asan -DLLM_TEST_REUSE_MODELS="$reuse" >/dev/null
  local targets=(llm_unit_tests llm_concurrency_tests llm_regression_tests llm_model_tests llm_c_api_test
                 llm_hpp_test llm_default_model_tests llm-cli example_stream example_stream_cpp example_chat)
  [ -z "$reuse" ] && targets+=(llm-convert)
  cmake --build build-asan -j "$jobs" --target "${targets[@]}"
}
asan_test() { ctest --preset asan -j "$jobs"; }

tsan_build() {
  cmake --preset tsan >/dev/null
  cmake --build build-tsan -j "$jobs" --target llm_concurrency_tests
}
tsan_test() { ctest --preset tsan; }

valgrind_c_api() {
  # The bf16 file: half the bytes of the f32 one to hash and read under memcheck.
  local exe="$build/tests/llm_c_api_test" model="$build/tests/work/tiny-llama-code-bf16.llm"
  if [ ! -x "$exe" ] || [ ! -f "$model" ]; then
    echo "valgrind: SKIPPED ($exe or $model missing: run scripts/test.sh first)"
    return 0
  fi
  # The C test links libllm.so only (no mimalloc), so memcheck sees every
  # heap block. Definite and indirect leaks are errors. (--track-origins=yes
  # doubles the run time: add it by hand to chase an uninitialised read.)
  # scripts/valgrind.supp: a false positive of the dynamic loader.
  valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --suppressions=scripts/valgrind.supp "$exe" "$model"
}

for part in "${parts[@]}"; do
  case "$part" in
    asan) run_part "asan build" asan_build; run_part "asan tests" asan_test ;;
    tsan) run_part "tsan build" tsan_build; run_part "tsan tests" tsan_test ;;
    valgrind) run_part "valgrind c_api" valgrind_c_api ;;
  esac
done

echo "==== sanitizer timings"
printf '  %s\n' "${timings[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "sanitizers.sh: failed: ${failed[*]}" >&2
  exit 1
fi
