#!/usr/bin/env bash
# Builds libllm, converts a checkpoint and streams a generation.
# Usage: scripts/demo.sh [HF_CHECKPOINT_DIR] [PROMPT]
#   default checkpoint: models/libllm-tiny, the small model shipped in this
#   repository (so the demo needs nothing beside the clone)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
model_dir=${1:-models/libllm-tiny}
prompt=${2:-"def fibonacci(n):"}
if [ ! -f "$model_dir/config.json" ]; then
  echo "demo: no Hugging Face checkpoint at $model_dir" >&2
  echo "      pass a folder with config.json, *.safetensors and tokenizer.json" >&2
  exit 1
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLLM_CUDA_ARCHITECTURES="${LLM_CUDA_ARCHITECTURES:-90}" >/dev/null
cmake --build build -j "$jobs" --target llm-cli llm-convert
out=build/$(basename "$model_dir").llm
./build/llm-convert "$model_dir" -o "$out" --dtype bf16
./build/llm generate -m "$out" -p "$prompt" -n 96 --temp 0.7 --seed 1
echo
echo "demo: chat with it:  build/llm chat -m $out"
