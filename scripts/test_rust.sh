#!/usr/bin/env bash
# Tests the Rust bindings (bindings/rust) against an already built libllm:
# `cargo test` and `cargo build --examples`, offline (the crate has no
# dependencies). Cargo's home and target directories go inside the build
# directory, so nothing is written to the source tree.
# Usage: scripts/test_rust.sh [BUILD_DIR]      (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

# rustup installs into ~/.cargo/bin, which non-login shells may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "test_rust.sh: cargo not found (install a Rust toolchain, 1.77 or newer)" >&2
  exit 1
fi
case "$(uname -s)" in
  Darwin) lib=libllm.dylib ;;
  *) lib=libllm.so ;;
esac
if [ ! -e "$build/$lib" ]; then
  echo "test_rust.sh: $build/$lib not found; build libllm first:" >&2
  echo "  cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release && cmake --build $build" >&2
  exit 1
fi

build_abs=$(cd "$build" && pwd)
export LIBLLM_LIB_DIR="$build_abs"
export CARGO_TARGET_DIR="$build_abs/rust/target"
# A private CARGO_HOME keeps the user's cargo config and caches out of it; the
# toolchain itself still comes from rustup / the PATH.
export CARGO_HOME="$build_abs/rust/cargo-home"
export CARGO_NET_OFFLINE=true
mkdir -p "$CARGO_HOME"

manifest=bindings/rust/Cargo.toml
cargo test --offline --locked --manifest-path "$manifest"
cargo build --offline --locked --manifest-path "$manifest" --examples
echo "test_rust.sh: Rust bindings OK (example: $CARGO_TARGET_DIR/debug/examples/stream)"
