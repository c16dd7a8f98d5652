#!/usr/bin/env bash
# Writes calibration text for `llm-convert --calibrate`: Python standard
# library source (code, comments and docstrings), which is disjoint from the
# evaluation texts used to measure quantization quality.
# Usage: scripts/make_calibration_text.sh OUT.txt [BYTES]   (default 300000)
set -euo pipefail
out=${1:?usage: $0 OUT.txt [BYTES]}
bytes=${2:-300000}
stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
: > "$out"
for f in "$stdlib"/{textwrap,argparse,dataclasses,functools,csv,json/decoder,json/encoder,pathlib,shutil,statistics,string,difflib,heapq,bisect,calendar}.py; do
  [ -f "$f" ] && cat "$f" >> "$out"
  [ "$(stat -c %s "$out")" -ge "$bytes" ] && break
done
head -c "$bytes" "$out" > "$out.tmp" && mv "$out.tmp" "$out"
echo "wrote $(stat -c %s "$out") bytes of calibration text to $out"
