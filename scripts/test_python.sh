#!/usr/bin/env bash
# Tests the Python bindings (bindings/python) against the built libllm.
# Usage: scripts/test_python.sh [BUILD_DIR] [PYTEST_ARGS...]   (default: build)
#
# Needs BUILD_DIR/libllm.so (scripts/test.sh builds it). Creates a virtual
# environment in BUILD_DIR/pyenv (reused on later runs), installs the bindings
# with pytest and NumPy from PyPI, and runs the tests with LIBLLM_PATH pointing
# at BUILD_DIR/libllm.so. Model tests use BUILD_DIR/tests/work (made by ctest)
# or convert ../shared/models/tiny-llama-code, and skip, saying so, without it.
# LIBLLM_MYPY=1 also type-checks the package with mypy --strict.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${1:-build}
[ $# -gt 0 ] && shift
if [ ! -d "$build" ]; then
  echo "test_python: build folder $build not found; build libllm first (scripts/test.sh)" >&2
  exit 1
fi
build=$(cd "$build" && pwd)
lib="$build/libllm.so"
if [ ! -f "$lib" ]; then
  echo "test_python: $lib not found; build libllm first (scripts/test.sh)" >&2
  exit 1
fi

python=${PYTHON:-python3}
venv="$build/pyenv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian's python3 lacks ensurepip without python3-venv.
    if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
      ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv" >/dev/null; }
    fi
    rm -rf "$venv"
    "$python" -m venv "$venv"
  fi
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
extra=()
[ "${LIBLLM_MYPY:-0}" = 1 ] && extra+=(mypy)
# pytest, NumPy and setuptools are installed when missing (pip answers from the
# venv without the network when they are there); the bindings are reinstalled
# every run since they may have changed, without bundling the library
# (LIBLLM_PATH below names it).
"${pip[@]}" install pytest numpy "setuptools>=61" wheel "${extra[@]}"
LIBLLM_BUNDLE=0 "${pip[@]}" install --force-reinstall --no-deps --no-build-isolation "$root/bindings/python"

export LIBLLM_PATH="$lib"
if [ "${LIBLLM_MYPY:-0}" = 1 ]; then
  (cd "$root/bindings/python" && "$venv/bin/python" -m mypy --strict libllm)
fi
# The pytest script (not `python -m pytest`, which puts the working folder on
# sys.path) so that the installed package, not the source tree, is tested.
cd "$root/bindings/python"
exec "$venv/bin/pytest" -p no:cacheprovider tests "$@"
