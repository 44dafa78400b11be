// load_model and mlxq::Model: the checkpoint opened once for all the sessions made from it.
#include <filesystem>
#include <future>

#include "core/error.h"
#include "engine/model_impl.h"
#include "engine/prompt.h"
#include "model/gemma4/vision.h"
#include "text/chat_template.h"

namespace fs = std::filesystem;

namespace mlxq {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  check(options.max_context > 0 && options.max_chunk > 0, "load_model: max_context and max_chunk must be positive");
  check(options.batch_sequences >= 1, "load_model: batch_sequences must be at least 1");
  check(options.max_soft_tokens == 0 || model::gemma4::valid_vision_budget(options.max_soft_tokens),
        "load_model: max_soft_tokens " + std::to_string(options.max_soft_tokens) +
            " is not a soft-token budget (70, 140, 280, 560 or 1120)");
  auto impl = std::make_unique<Model::Impl>();
  impl->path = path;
  impl->load = options;
  // The tokenizer (about 0.4 s of JSON for Gemma 4's 262k pieces) loads on another thread while
  // the model maps and checks its weights (the directory is the one io::Checkpoint uses: the path
  // itself, or a single file's folder).
  const std::string dir = fs::is_regular_file(path) ? fs::path(path).parent_path().string() : path;
  const std::string tok_path = (fs::path(dir) / "tokenizer.json").string();
  std::future<text::Tokenizer> tok = std::async(std::launch::async, [tok_path] {
    check(fs::exists(tok_path), tok_path + ": missing (a chat session needs the checkpoint's tokenizer)");
    return text::Tokenizer::from_file(tok_path);
  });
  model::gemma4::ModelOptions mo;
  mo.threads = options.threads;
  mo.max_chunk = options.max_chunk;
  mo.exact = options.exact;
  mo.int8 = options.int8;
  mo.interleaved = options.interleaved;
  mo.max_image_tokens = options.max_soft_tokens;  // 0: the config's budget, when it has a vision tower
  impl->net = std::make_unique<model::gemma4::Model>(path, mo);
  impl->image_budget = impl->net->max_image_tokens();
  impl->tok = std::make_unique<text::Tokenizer>(tok.get());
  check(impl->tok->vocab_size() <= impl->net->config().vocab_size,
        tok_path + ": " + std::to_string(impl->tok->vocab_size()) + " tokens, more than the model's vocab_size " +
            std::to_string(impl->net->config().vocab_size));
  const model::gemma4::Gemma4Config& cfg = impl->net->config();
  impl->image_ids = {impl->tok->id_of("<|image|>"), int32_t(cfg.boi_token_id), int32_t(cfg.image_token_id),
                     int32_t(cfg.eoi_token_id)};
  if (impl->net->has_vision()) {
    const engine::ImageTokenIds& ids = impl->image_ids;
    check(ids.placeholder >= 0, tok_path + ": no <|image|> token, which the chat template writes for each image");
    for (const int32_t id : {ids.open, ids.soft, ids.close})
      check(id >= 0 && id < cfg.vocab_size, cfg.source + ": boi_token_id, image_token_id and eoi_token_id must lie in "
                                             "the vocabulary [0, " + std::to_string(cfg.vocab_size) + ")");
  }
  impl->gen = model::gemma4::load_generation_config(impl->net->checkpoint().dir(), impl->net->config());
  impl->scheduler = std::make_unique<engine::Scheduler>(*impl->net, options.batch_sequences);
  return std::shared_ptr<Model>(new Model(std::move(impl)));
}

const std::string& Model::path() const { return impl_->path; }
const LoadOptions& Model::options() const { return impl_->load; }
int Model::live_sessions() const { return impl_->sessions.load(); }

ForwardStats Model::forward_stats() const {
  const engine::SchedulerStats s = impl_->scheduler->stats();
  return ForwardStats{s.requests, s.waited, s.batches, s.batched_rows, s.batched_sequences, s.queued, s.forward_seconds};
}

std::vector<int32_t> Model::prompt_tokens(const std::string& messages_json, const std::string& tools_json,
                                          bool thinking) const {
  engine::Conversation c = engine::parse_conversation(messages_json, tools_json);
  const std::vector<engine::ImageBytes> raw = engine::take_message_images(c.messages);
  text::TemplateOptions opt;
  opt.add_generation_prompt = true;
  opt.enable_thinking = thinking;
  std::vector<int32_t> ids = engine::render_prompt_tokens(*impl_->tok, std::move(c.messages), c.tools, opt);
  if (raw.empty()) return ids;
  model::gemma4::Model& net = *impl_->net;
  if (!net.has_vision()) net.vision();  // throws, saying what is missing
  std::vector<engine::PromptImage> images;
  for (const engine::ImageBytes& im : raw)
    images.push_back(engine::prepare_image(im.bytes, im.name, *net.config().vision, impl_->image_budget, false));
  std::vector<const engine::PromptImage*> ptrs;
  for (const auto& im : images) ptrs.push_back(&im);
  return engine::expand_images(ids, ptrs, impl_->image_ids).tokens;
}

ModelInfo Model::info() const {
  const model::gemma4::Model& net = *impl_->net;
  const auto& c = net.config();
  ModelInfo i;
  i.path = impl_->path;
  i.model_type = "gemma4";
  i.vocab_size = c.vocab_size;
  i.hidden_size = c.hidden_size;
  i.num_layers = c.num_hidden_layers;
  i.num_experts = c.num_experts;
  i.top_k_experts = c.top_k_experts;
  i.max_position_embeddings = c.max_position_embeddings;
  const auto p = net.precision();
  i.precision = p == kernels::Precision::Exact ? "exact" : p == kernels::Precision::Int8 ? "int8" : "fast";
  i.interleaved_path = net.interleaved_path();
  i.threads = impl_->net->pool().size();
  i.weight_bytes = net.checkpoint().total_bytes();
  i.bytes_per_token = net.bytes_per_token();
  i.vision = net.has_vision();
  i.max_soft_tokens = i.vision ? impl_->image_budget : 0;
  return i;
}

}  // namespace mlxq
