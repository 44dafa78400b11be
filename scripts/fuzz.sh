#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 60).
# Corpora live in build-fuzz/corpus/<target>; a crash leaves its input in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
./scripts/setup.sh >/dev/null
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
      -DMLXQ_FUZZ=ON -DMLXQ_BUILD_TESTS=OFF -DMLXQ_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz --target tokenizer_fuzz template_fuzz tool_call_fuzz image_fuzz gemma4_tokenizer
for t in tokenizer template tool_call image; do
  mkdir -p "build-fuzz/corpus/$t"
  # The image decoder starts from small valid PNGs (the resize test's inputs), so it mutates
  # real chunk structure rather than searching for the signature.
  [ "$t" != image ] || cp -n tests/data/image-resize/noise_37x23.png tests/data/image-resize/smooth_61x40_to_20x13.png \
      "build-fuzz/corpus/$t/"
  echo "== $t: ${secs}s"
  (cd build-fuzz && ASAN_OPTIONS=detect_leaks=1 "./fuzz/${t}_fuzz" -max_total_time="$secs" -max_len=4096 \
      -print_final_stats=1 "corpus/$t" 2>&1 | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|==.*ERROR|SUMMARY)' || true)
  [ -z "$(ls build-fuzz/crash-* build-fuzz/leak-* build-fuzz/timeout-* 2>/dev/null)" ] || { echo "fuzz: $t found a failure"; exit 1; }
done
echo "fuzz: no findings"
