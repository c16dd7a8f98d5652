#!/usr/bin/env bash
# Prepares the training data of the default model (models/libllm-tiny): the
# text, the byte-level BPE tokenizer and the token stream.
# Usage: scripts/prepare_training_text.sh [OUT_DIR]        (default: carry/data)
# Then train on a GPU machine:
#   python3 scripts/train_default_model.py OUT_DIR CHECKPOINT_DIR
# and copy CHECKPOINT_DIR's files and OUT_DIR's tokenizer*.json and
# heldout_*.txt into models/libllm-tiny/ (see its README).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-carry/data}
if [ ! -d /usr/share/doc/python3.11/html ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -q && $sudo apt-get install -y -q python3.11-doc
fi
python3 -c 'import tokenizers, numpy' 2>/dev/null || python3 -m pip install -q tokenizers numpy
python3 scripts/prepare_training_text.py "$out"
