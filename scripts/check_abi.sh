#!/usr/bin/env bash
# ABI guard for libllm.so: compares the exported ABI of a build against the
# committed baseline abi/libllm.abi with libabigail's abidiff, and checks
# that the library exports nothing but llm_* symbols.
#
#   scripts/check_abi.sh [--strict] [BUILD_DIR]      (default: build-abi)
#
# It configures BUILD_DIR as a Debug build (-g: abidw needs DWARF to
# describe the types; -O0 compiles fastest and exports exactly the same
# interface) and builds only the shared library; an up-to-date BUILD_DIR is
# reused.
#
# What fails:
#  * abidiff's "incompatible change" bit (exit status bit 8): a function or
#    variable of the baseline removed or renamed;
#  * any exported symbol not named llm_* (nm -D --defined-only).
# What passes:
#  * new llm_* functions, and fields appended at the end of llm_*_params /
#    llm_*_info structs (they begin with struct_size): suppressed by
#    abi/libllm.suppr, not even reported;
#  * other changes abidiff reports without the incompatible bit (a type
#    changed under an existing function, an enumerator added, ...) are
#    printed for review but pass, since abidiff cannot tell the compatible
#    ones (a new enumerator) from the breaking ones (a reordered field).
#    --strict makes them fail as well.
#
# Regenerating the baseline after a deliberate change (with a bumped
# LLM_API_VERSION / SOVERSION when compatibility is broken):
#   scripts/check_abi.sh --update [BUILD_DIR]
# which runs
#   abidw --headers-dir include --drop-private-types --drop-undefined-syms \
#         --exported-interfaces-only --short-locs --no-corpus-path \
#         --out-file abi/libllm.abi BUILD_DIR/libllm.so
# (only the exported llm_* functions and the types of include/ they reach),
# then commit abi/libllm.abi.
set -euo pipefail
cd "$(dirname "$0")/.."
strict=0 update=0
while [ $# -gt 0 ]; do
  case "$1" in
    --strict) strict=1; shift ;;
    --update) update=1; shift ;;
    *) break ;;
  esac
done
build=${1:-build-abi}

if ! command -v abidiff >/dev/null; then
  echo "check_abi: installing abigail-tools"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq abigail-tools >/dev/null
fi
scripts/install-deps.sh

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DLLM_TESTS=OFF -DLLM_MIMALLOC=OFF -DLLM_CUDA=OFF >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target llm
lib="$build/libllm.so"

status=0
bad=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -v '^llm_' || true)
if [ -n "$bad" ]; then
  echo "check_abi: libllm.so exports symbols outside llm_*:"
  echo "$bad"
  status=1
fi

if [ "$update" -eq 1 ]; then
  abidw --headers-dir include --drop-private-types --drop-undefined-syms --exported-interfaces-only \
    --short-locs --no-corpus-path --out-file abi/libllm.abi "$lib"
  echo "check_abi: wrote abi/libllm.abi ($(grep -c '<elf-symbol ' abi/libllm.abi) symbols); commit it"
  exit $status
fi

set +e
report=$(abidiff --headers-dir2 include --drop-private-types --exported-interfaces-only \
  --suppressions abi/libllm.suppr abi/libllm.abi "$lib")
rc=$?
set -e
if [ $((rc & 3)) -ne 0 ]; then
  echo "$report"
  echo "check_abi: abidiff failed to run (exit $rc)"
  exit 1
fi
if [ $((rc & 8)) -ne 0 ]; then
  echo "$report"
  echo "check_abi: INCOMPATIBLE ABI change against abi/libllm.abi (see above)."
  echo "If deliberate: bump LLM_VERSION_MAJOR / the SOVERSION, then scripts/check_abi.sh --update."
  status=1
elif [ $((rc & 4)) -ne 0 ]; then
  echo "$report"
  if [ "$strict" -eq 1 ]; then
    echo "check_abi: ABI changed against abi/libllm.abi (--strict)."
    status=1
  else
    echo "check_abi: ABI changes above are not flagged incompatible by abidiff; review them"
    echo "(a reordered or retyped field is breaking too). Passing."
  fi
else
  echo "check_abi: ABI compatible with abi/libllm.abi; only llm_* symbols exported."
fi
exit $status
