#!/usr/bin/env bash
# Installs the dependencies, builds mlxq, and runs the main job: an interactive chat on the
# embedded default model (a small synthetic Gemma-4 checkpoint with random weights and the real
# tokenizer, created on first use). Pass -m DIR to chat with a real checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target mlxq gemma4_tokenizer
exec ./build/mlxq chat "$@"
