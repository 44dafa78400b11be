#!/usr/bin/env bash
# Installs the dependencies, builds mlxq, and runs the main job: an interactive chat on the
# embedded default model (tiny-chat, a small trained Gemma-4 with the real tokenizer, converted on
# first use into ~/.cache/mlxq). Pass -m DIR to chat with another checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target mlxq gemma4_tokenizer tiny_chat_assets
exec ./build/mlxq chat "$@"
