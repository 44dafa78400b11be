// What a loaded mlxq::Model holds (engine-internal): the network with its thread pool, the
// tokenizer, the generation defaults, and the scheduler every session's forward pass goes through.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "engine/images.h"
#include "engine/scheduler.h"
#include "mlxq/model.h"
#include "model/gemma4/config.h"
#include "model/gemma4/model.h"
#include "text/tokenizer.h"

namespace mlxq {

struct Model::Impl {
  std::string path;
  LoadOptions load;
  std::unique_ptr<model::gemma4::Model> net;
  std::unique_ptr<text::Tokenizer> tok;  // immutable after loading: shared by the sessions
  model::gemma4::GenerationConfig gen;
  std::unique_ptr<engine::Scheduler> scheduler;
  int64_t image_budget = 0;       // soft tokens per image (LoadOptions::max_soft_tokens or the config's)
  engine::ImageTokenIds image_ids;  // the template's placeholder and config.json's image ids
  std::atomic<int> sessions{0};
};

}  // namespace mlxq
