#!/usr/bin/env bash
# Maintainer step (not part of set-up, build or CI): regenerates the corpus, trains the tiny
# Gemma-4 chat model with PyTorch on the CPU, and refreshes the committed checkpoint
# (models/tiny-chat/) and its test data (tests/data/tiny-chat/). About 50 minutes on 2 cores (600 steps of about 5 s).
# Needs Debian's python3-torch and an optimized BLAS (the reference BLAS is ~40x slower).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
pkgs=(python3-torch python3-numpy libopenblas0-pthread zstd)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; fi
work=${MLXQ_TRAIN_DIR:-/tmp/mlxq-train-tiny}
mkdir -p "$work"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target mlxq gemma4_tokenizer
/usr/bin/python3 train/tiny/make_corpus.py "$work/corpus"
for s in train calibration heldout; do
  build/mlxq render-chats -i "$work/corpus/$s.jsonl" -o "$work/corpus/$s.tok.jsonl"
done
/usr/bin/python3 train/tiny/train.py --train "$work/corpus/train.tok.jsonl" \
  --heldout "$work/corpus/heldout.tok.jsonl" --out "$work/model" "$@" | tee "$work/train.log"
# Install the result: the committed checkpoint (gzip -n: no name or time stamp, so the same
# weights give the same bytes), the chats it is calibrated and evaluated on, and the test data.
m=models/tiny-chat t=tests/data/tiny-chat
mkdir -p "$m" "$t"
gzip -9 -n -c "$work/model/model.safetensors" > "$m/model.safetensors.gz.tmp" && mv "$m/model.safetensors.gz.tmp" "$m/model.safetensors.gz"
cp "$work/model/config.json" "$work/model/generation_config.json" "$m/"
cp "$work/corpus/calibration.jsonl" "$work/corpus/heldout.jsonl" "$m/"
cp "$work/model/golden.json" "$work/model/golden_logits.npy" "$t/"
head -n 40 "$work/corpus/heldout.jsonl" > "$t/heldout-sample.jsonl"
grep -E '^(non-embedding|done)' "$work/train.log" > "$m/train-summary.txt"
echo "train-tiny: installed $m and $t; rebuild, run the tests, and remake docs/benchmarks.md's table (scripts/quality-table.sh)"
