#!/usr/bin/env bash
# Quantization quality of the trained tiny-chat model on its held-out chats (docs/benchmarks.md):
# BF16, uniform 8/3/2-bit, unsloth at 4/3/2 bits and mixed_3_6, each without and with imatrix AWQ.
# Prints a Markdown table of perplexity, mean KL vs BF16, answer accuracy, file size and bytes read
# per token. Usage: scripts/quality-table.sh [MAX_CONVERSATIONS]   (default 400: all)
set -euo pipefail
cd "$(dirname "$0")/.."
max=${1:-400}
bin=build/mlxq
work=${MLXQ_QUALITY_DIR:-/tmp/mlxq-quality}
mkdir -p "$work"
$bin run -p Hi --max-tokens 1 >/dev/null 2>&1  # makes the default model if need be
cache=${XDG_CACHE_HOME:-$HOME/.cache}/mlxq
hf=$(ls -td "$cache"/tiny-chat-*/hf 2>/dev/null | head -n 1)
[ -n "$hf" ] && [ -f "$hf/config.json" ] || { echo "quality-table: no $cache/tiny-chat-*/hf folder" >&2; exit 1; }
echo "reference: $hf" >&2
chats=models/tiny-chat/heldout.jsonl
im="$work/imatrix.gguf"
$bin imatrix -m "$hf" --chats models/tiny-chat/calibration.jsonl -o "$im" 2>/dev/null
echo "| checkpoint | AWQ | perplexity | mean KL vs BF16 | exact answers | key fact | file MB | MB read / token |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
row() {  # name awq dir
  j=$($bin eval -m "$3" --ref "$hf" --chats "$chats" --max "$max" --json 2>/dev/null)
  python3 - "$1" "$2" "$j" <<'PY'
import json, sys
n, awq, j = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"| {n} | {awq} | {j['perplexity']:.4f} | {j['kl_mean']:.5f} | {100*j['exact']:.1f}% | {100*j['key']:.1f}% | "
      f"{j['file_bytes']/1e6:.1f} | {j['bytes_per_token']/1e6:.2f} |")
PY
}
row "BF16" "-" "$hf"
for spec in "8:" "4:unsloth" "3:unsloth" "2:unsloth" "3:" "2:" "3:mixed_3_6"; do
  bits=${spec%%:*}; recipe=${spec#*:}
  name="${recipe:-uniform} ${bits}-bit"; [ "$recipe" = mixed_3_6 ] && name="mixed_3_6"
  args=(-q --q-bits "$bits"); [ -n "$recipe" ] && args+=(--q-recipe "$recipe")
  for awq in no yes; do
    out="$work/${recipe:-uniform}-$bits-$awq"
    extra=(); [ $awq = yes ] && extra=(--imatrix-path "$im")
    rm -rf "$out"
    $bin convert -i "$hf" -o "$out" "${args[@]}" "${extra[@]}" >/dev/null 2>&1
    row "$name" "$awq" "$out"
  done
done
