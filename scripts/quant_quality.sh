#!/usr/bin/env bash
# Measures quantization quality on tiny-llama-code the way llama.cpp's
# perplexity tool does (eval_code.txt, windows of 512 scoring their second
# half, first 64 windows): mean / p99 KL divergence against the f32
# conversion, top-1 agreement, perplexity and file size, for each weight
# format. Prints a Markdown table.
# Usage: scripts/quant_quality.sh [BUILD_DIR] [WORK_DIR] [CONFIG...]
#   CONFIG: "int4 g32 sym", "int8 g128 asym calib", ... (default: a standard set)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}; work=${2:-$build/quant-quality}
shift $(( $# > 2 ? 2 : $# )) || true
model=${LLM_SHARED_DIR:-../shared}/models/tiny-llama-code
text=$model/reference/eval_code.txt
mkdir -p "$work"
[ -f "$work/f32.llm" ] || "$build/llm-convert" "$model" -o "$work/f32.llm" --dtype f32 2>/dev/null
[ -f "$work/calib.txt" ] || scripts/make_calibration_text.sh "$work/calib.txt" >/dev/null
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=("int8 g32 sym" "int8 g128 sym" "int4 g32 sym" "int4 g64 sym" "int4 g128 sym"
           "int4 g32 asym" "int4 g64 asym" "int4 g128 asym" "int4 g32 sym calib" "int4 g128 sym calib"
           "int4 g32 asym calib" "int4 g128 asym calib" "int4 g32 sym rtn")
fi
echo "| weights | group | zero point | scales | file MB | PPL | mean KLD | p99 KLD | same top-1 |"
echo "|---|---|---|---|---|---|---|---|---|"
for cfg in "${configs[@]}"; do
  read -r type group zp extra <<<"$cfg"
  args=(--weights "$type" --group-size "${group#g}")
  [ "$zp" = asym ] && args+=(--asymmetric) || args+=(--symmetric)
  how="searched"
  case "${extra:-}" in
    calib) args+=(--calibrate "$work/calib.txt"); how="searched, calibrated" ;;
    rtn) args+=(--no-search); how="round-to-nearest" ;;
  esac
  out="$work/$(echo "$cfg" | tr ' ' '-').llm"
  "$build/llm-convert" "$model" -o "$out" "${args[@]}" 2>/dev/null
  j=$("$build/llm" perplexity -m "$out" --kld-ref "$work/f32.llm" -f "$text" --ctx 512 --score-second-half \
       --chunks 64 --json)
  python3 - "$j" "$out" "$type" "$group" "$zp" "$how" <<'PY'
import json, os, sys
j = json.loads(sys.argv[1]); size = os.path.getsize(sys.argv[2]) / 1e6
print(f"| {sys.argv[3]} | {sys.argv[4][1:]} | {'yes' if sys.argv[5] == 'asym' else 'no'} | {sys.argv[6]} | {size:.1f} | "
      f"{j['perplexity']:.4f} | {j['kld_mean']:.5f} | {j['kld_p99']:.4f} | {100 * j['top1_agreement']:.2f}% |")
PY
done
