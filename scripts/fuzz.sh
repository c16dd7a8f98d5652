#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang-14, AddressSanitizer and
# UndefinedBehaviorSanitizer (the `asan` preset: build-asan/, shared with
# scripts/sanitizers.sh asan) and runs each one for SECONDS on its seed corpus
# plus its saved findings (tests/regression/<target>/), LLM_FUZZ_PARALLEL
# targets at a time. Exits non-zero if any target crashes, leaks, times out or
# runs out of memory; the input that did it is saved as
# BUILD/fuzz/artifacts/<target>/crash-* (etc.) and the log as
# BUILD/fuzz/logs/<target>.log. Replay one with BUILD/fuzz/fuzz_<target> FILE,
# then copy it to tests/regression/<target>/ (see fuzz/README.md).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  per target (default 60), the replay of the corpus included
#   TARGET   model_load tokenizer tokenizer_json safetensors hf_config chat_template session_state
#            (default: all)
# Environment: LLM_FUZZ_JOBS (parallel compile jobs, default 2),
# LLM_FUZZ_PARALLEL (targets fuzzed at once, default 2), LLM_FUZZ_FLAGS
# (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[ $# -gt 0 ] && shift
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
all_targets=(model_load tokenizer tokenizer_json safetensors hf_config chat_template session_state)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
build=build-asan
jobs=${LLM_FUZZ_JOBS:-2}
parallel=${LLM_FUZZ_PARALLEL:-2}

# ---- toolchain (idempotent) --------------------------------------------------------
scripts/install-deps.sh
missing=()
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz.sh: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- build -------------------------------------------------------------------------
cmake --preset asan >/dev/null
cmake --build "$build" --target fuzzers -j "$jobs"

# ---- run ---------------------------------------------------------------------------
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fuzz_one() {  # target: runs it, writes its log; the exit status is libFuzzer's
  local t=$1
  local exe="$build/fuzz/fuzz_$t" seeds="fuzz/corpus/$t" work="$build/fuzz/corpus/$t"
  local artifacts="$build/fuzz/artifacts/$t" log="$build/fuzz/logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  local flags=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
               -artifact_prefix="$artifacts/")
  [ -f "fuzz/dict/$t.dict" ] && flags+=(-dict="fuzz/dict/$t.dict")
  # shellcheck disable=SC2206
  [ -n "${LLM_FUZZ_FLAGS:-}" ] && flags+=($LLM_FUZZ_FLAGS)
  local dirs=("$work" "$seeds")  # new inputs go to the first folder, never into the repository
  [ -d "tests/regression/$t" ] && dirs+=("tests/regression/$t")
  "$exe" "${flags[@]}" "${dirs[@]}" >"$log" 2>&1
}
report() {  # target rc
  local t=$1 rc=$2 log="$build/fuzz/logs/$1.log"
  echo "== fuzz_$t (${seconds} s): $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions," \
       "$(grep -E '^stat::new_units_added' "$log" | awk '{print $2}') new units," \
       "peak RSS $(grep -E '^stat::peak_rss_mb' "$log" | awk '{print $2}') MB"
  if [ "$rc" -ne 0 ]; then
    echo "fuzz.sh: fuzz_$t FAILED (exit $rc); log: $log; inputs: $(ls "$build/fuzz/artifacts/$t" | tr '\n' ' ')" >&2
    grep -E -m 20 'ERROR|SUMMARY|invariant broken|runtime error|==[0-9]+==' "$log" >&2 || tail -40 "$log" >&2
    return 1
  fi
}
for t in "${targets[@]}"; do
  [ -x "$build/fuzz/fuzz_$t" ] || { echo "fuzz.sh: no fuzz target $t" >&2; exit 2; }
done
failed=()
for ((i = 0; i < ${#targets[@]}; i += parallel)); do
  batch=("${targets[@]:i:parallel}")
  pids=()
  for t in "${batch[@]}"; do
    fuzz_one "$t" &
    pids+=($!)
  done
  for k in "${!batch[@]}"; do
    rc=0
    wait "${pids[$k]}" || rc=$?
    report "${batch[$k]}" "$rc" || failed+=("${batch[$k]}")
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failures in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), ${seconds} s each, no findings"
