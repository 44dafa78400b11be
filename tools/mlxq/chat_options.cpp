// Shared chat options and the JSON form of a ChatResult.
#include "mlxq/chat_options.h"

#include <nlohmann/json.hpp>

#include "mlxq/commands.h"

namespace mlxq::cli {

void ChatArgs::add_to(CLI::App* cmd) {
  cmd->add_option("-m,--model", model, "Checkpoint directory (default: the embedded tiny-chat model)");
  cmd->add_option("--system", system, "System prompt");
  cmd->add_option("--reasoning-effort", reasoning_effort, "none | low (thinking off) | medium | high (thinking on)")
      ->check(CLI::IsMember({"none", "low", "medium", "high"}));
  cmd->add_option("--max-tokens", max_tokens, "Most tokens to generate per answer (default 2048)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--temp", temp, "Temperature (0: greedy; default from generation_config.json)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", top_p, "Top-p (default from generation_config.json)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", top_k, "Top-k (0: off; default from generation_config.json)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--min-p", min_p, "Min-p")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", seed, "Random seed (same seed, same answer)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--stop", stop, "Stop string (repeatable)");
  cmd->add_flag("--ignore-eos", ignore_eos, "Keep generating past stop tokens, to --max-tokens (benchmarks, tests)");
  cmd->add_option("-t,--threads", threads, "Threads (0: all cores)");
  cmd->add_flag("--exact", exact, "Exact precision: f32 activations in every matmul (default: two int8 parts into quantized matmuls)");
  cmd->add_flag("--int8", int8, "One int8 part per activation (and bf16 into bf16 matmuls): faster prefill, further from exact");
  cmd->add_option("--max-context", max_context, "KV-cache size in tokens")->check(CLI::PositiveNumber);
  cmd->add_option("--max-soft-tokens", max_soft_tokens,
                  "Soft tokens per image: 70, 140, 280, 560 or 1120 (default: the checkpoint's, 280)")
      ->check(CLI::IsMember({70, 140, 280, 560, 1120}));
  cmd->add_option("--interleaved", interleaved,
                  "Interleaved weights file from `mlxq repack`: auto (<model>/mlxq-interleaved.bin if present), off, or a path")
      ->capture_default_str();
}

ChatConfig ChatArgs::config() const {
  ChatConfig c;
  if (max_tokens >= 0) c.max_new_tokens = max_tokens;
  if (temp >= 0) c.temperature = float(temp);
  if (top_p >= 0) c.top_p = float(top_p);
  if (top_k >= 0) c.top_k = top_k;
  if (min_p >= 0) c.min_p = float(min_p);
  if (seed >= 0) c.seed = uint64_t(seed);
  if (!reasoning_effort.empty()) c.reasoning_effort = reasoning_effort;
  c.stop = stop;
  c.ignore_eos = ignore_eos;
  return c;
}

std::unique_ptr<Session> ChatArgs::open() const {
  LoadOptions lo;
  lo.threads = threads;
  lo.exact = exact;
  lo.int8 = int8;
  lo.interleaved = interleaved;
  lo.max_context = max_context;
  lo.max_soft_tokens = max_soft_tokens;
  SessionOptions so;
  so.system = system;
  return load_session(model.empty() ? default_model_path() : model, lo, so);
}

std::string result_json(const ChatResult& r) {
  nlohmann::ordered_json j;
  j["text"] = r.text;
  j["thinking"] = r.thinking ? nlohmann::ordered_json(*r.thinking) : nlohmann::ordered_json(nullptr);
  nlohmann::ordered_json calls = nlohmann::ordered_json::array();
  for (const auto& c : r.tool_calls) {
    calls.push_back({{"id", c.id}, {"name", c.name}, {"arguments", c.arguments_json}, {"status", c.status}});
  }
  j["tool_calls"] = calls;
  j["finish_reason"] = to_string(r.finish_reason);
  j["thinking_enabled"] = r.thinking_enabled;
  j["num_tokens"] = r.num_tokens;
  j["prompt_tokens"] = r.prompt_tokens;
  j["cached_tokens"] = r.cached_tokens;
  j["prefill_tokens"] = r.prefill_tokens;
  j["reasoning_tokens"] = r.reasoning_tokens;
  j["raw_text"] = r.raw_text;
  j["performance"] = {{"ttft_ms", r.performance.ttft_ms},
                      {"prefill_tokens_per_second", r.performance.prefill_tokens_per_second},
                      {"decode_tokens_per_second", r.performance.decode_tokens_per_second},
                      {"vision_ms", r.performance.vision_ms}};
  const double predicted_ms = r.performance.decode_tokens_per_second > 0
                                  ? (r.num_tokens - 1) * 1000.0 / r.performance.decode_tokens_per_second : 0;
  j["timings"] = {{"cache_n", r.cached_tokens}, {"prompt_n", r.prefill_tokens},
                  {"prompt_ms", r.performance.ttft_ms},
                  {"prompt_per_second", r.performance.prefill_tokens_per_second},
                  {"predicted_n", r.num_tokens}, {"predicted_ms", predicted_ms},
                  {"predicted_per_second", r.performance.decode_tokens_per_second}};
  j["usage"] = {{"prompt_tokens", r.prompt_tokens}, {"completion_tokens", r.num_tokens},
                {"prompt_tokens_details", {{"cached_tokens", r.cached_tokens}}}};
  return j.dump(2);
}

}  // namespace mlxq::cli
