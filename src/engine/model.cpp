// load_model and mlxq::Model: the checkpoint opened once for all the sessions made from it.
#include <filesystem>
#include <future>

#include "core/error.h"
#include "engine/model_impl.h"
#include "engine/prompt.h"
#include "text/chat_template.h"

namespace fs = std::filesystem;

namespace mlxq {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  check(options.max_context > 0 && options.max_chunk > 0, "load_model: max_context and max_chunk must be positive");
  check(options.batch_sequences >= 1, "load_model: batch_sequences must be at least 1");
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
  impl->net = std::make_unique<model::gemma4::Model>(
      path, model::gemma4::ModelOptions{options.threads, options.max_chunk, options.exact, options.int8,
                                        options.interleaved});
  impl->tok = std::make_unique<text::Tokenizer>(tok.get());
  check(impl->tok->vocab_size() <= impl->net->config().vocab_size,
        tok_path + ": " + std::to_string(impl->tok->vocab_size()) + " tokens, more than the model's vocab_size " +
            std::to_string(impl->net->config().vocab_size));
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
  return engine::render_conversation(*impl_->tok, messages_json, tools_json, thinking);
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
  return i;
}

}  // namespace mlxq
