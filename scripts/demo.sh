#!/usr/bin/env bash
# Installs the dependencies, builds mlxq, and runs the main job on the embedded default model
# (a tiny synthetic Gemma-4 checkpoint with random weights, created on first use): the top-5
# next-token logits at every position of a short prompt. Pass -m DIR to use a real checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target mlxq
./build/mlxq logits --tokens 2,105,2364,107,818,5279,563 --top 5 "$@"
