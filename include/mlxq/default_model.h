// The embedded default model: "tiny-chat", a small Gemma-4 (the real architecture, tokenizer and
// chat template) trained on capitals, arithmetic and a weather tool (train/tiny/). It ships
// compressed as HF BF16 next to the mlxq binaries; on first use it is converted with the model
// card's own pipeline (an imatrix over its calibration chats, then MLX 3-bit unsloth with AWQ)
// into the user's cache directory, and the converted checkpoint is what every front end loads
// when no model is named.
#pragma once
#include <functional>
#include <string>

namespace mlxq {

struct DefaultModelOptions {
  // Folder with model.safetensors.gz, config.json, generation_config.json, tokenizer.json and
  // calibration.jsonl. "": $MLXQ_ASSETS_DIR, else tiny-chat/ next to the running executable,
  // else the build tree's copy.
  std::string assets_dir;
  // "": $XDG_CACHE_HOME/mlxq, else $HOME/.cache/mlxq.
  std::string cache_dir;
  int threads = 0;                                  // for the first-use conversion (0: all cores)
  std::function<void(const std::string&)> log;      // progress lines of the first-use conversion
};

// The converted checkpoint directory, made on first use (safe against concurrent first uses:
// one process converts under a file lock, the others wait). Throws mlxq::Error naming the
// missing or broken file.
std::string default_model_path(const DefaultModelOptions& options = {});

// One line saying what the default model is, for front ends to print.
std::string default_model_description();

}  // namespace mlxq
