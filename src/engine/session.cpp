// Session: one conversation over a loaded Gemma-4 checkpoint. A turn builds its prompt tokens (a
// delta on the live KV cache when possible, else a full render), prefills, then samples and
// decodes until a stop token, the length limit, a stop string or a cancel, streaming parsed
// deltas. Timing and KV-reuse rules follow session-and-benchmark.md §5.3 and §6.2.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "engine/prompt.h"
#include "mlxq/session.h"
#include "model/gemma4/model.h"
#include "text/gemma4_tokens.h"
#include "text/output_parser.h"
#include "text/sampler.h"

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace mlxq {

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::ToolCalls: return "tool_calls";
    case FinishReason::Cancelled: return "cancelled";
    default: return "error";
  }
}

namespace {

using Clock = std::chrono::steady_clock;

template <class T>
void merge(std::optional<T>& into, const std::optional<T>& from) {
  if (from) into = from;
}

ChatConfig merged(const ChatConfig& base, const ChatConfig& over) {
  ChatConfig c = base;
  merge(c.max_new_tokens, over.max_new_tokens);
  merge(c.temperature, over.temperature);
  merge(c.top_p, over.top_p);
  merge(c.min_p, over.min_p);
  merge(c.top_k, over.top_k);
  merge(c.repetition_penalty, over.repetition_penalty);
  merge(c.presence_penalty, over.presence_penalty);
  merge(c.frequency_penalty, over.frequency_penalty);
  merge(c.seed, over.seed);
  merge(c.reasoning_effort, over.reasoning_effort);
  merge(c.thinking_token_budget, over.thinking_token_budget);
  merge(c.tools_json, over.tools_json);
  if (!over.stop.empty()) c.stop = over.stop;
  if (!over.logit_bias.empty()) c.logit_bias = over.logit_bias;
  if (over.logits_processor) c.logits_processor = over.logits_processor;
  c.ignore_eos = base.ignore_eos || over.ignore_eos;
  return c;
}

// reasoning_effort: medium/high turn thinking on; none/low/unset/other leave it off (§4.3).
bool thinking_for(const std::optional<std::string>& effort) {
  return effort && (*effort == "medium" || *effort == "high");
}

// Holds back the tail of the answer that could still become a stop string, and cuts the answer
// at the first stop string found (earliest match, longest on a tie).
class StopFilter {
 public:
  explicit StopFilter(const std::vector<std::string>& stops) : stops_(stops) {
    for (const auto& s : stops_) hold_ = std::max(hold_, s.size());
  }
  // Returns the text now safe to emit; sets *hit when a stop string completed.
  std::string push(const std::string& delta, bool* hit) {
    pending_ += delta;
    size_t best = std::string::npos, best_len = 0;
    for (const auto& s : stops_) {
      if (s.empty()) continue;
      const size_t at = pending_.find(s);
      if (at != std::string::npos && (at < best || (at == best && s.size() > best_len))) best = at, best_len = s.size();
    }
    if (best != std::string::npos) {
      *hit = true;
      std::string out = pending_.substr(0, best);
      pending_.clear();
      return out;
    }
    size_t keep = hold_ > 0 ? std::min(pending_.size(), hold_ - 1) : 0;
    size_t cut = pending_.size() - keep;
    while (cut > 0 && cut < pending_.size() && (static_cast<unsigned char>(pending_[cut]) & 0xC0) == 0x80) --cut;
    std::string out = pending_.substr(0, cut);
    pending_.erase(0, cut);
    return out;
  }
  std::string flush() { return std::exchange(pending_, {}); }

 private:
  std::vector<std::string> stops_;
  size_t hold_ = 0;
  std::string pending_;
};

}  // namespace

struct Session::Impl {
  std::string path;
  LoadOptions load;
  SessionOptions opt;
  std::unique_ptr<model::gemma4::Model> model;
  std::unique_ptr<text::Tokenizer> tok;
  model::gemma4::GenerationConfig gen;
  std::unique_ptr<model::gemma4::KvCache> cache;
  std::vector<int32_t> history;     // tokens whose KV is in the cache
  ordered_json messages = ordered_json::array();  // committed conversation, for full re-renders
  std::string tools_at_start;       // tools JSON the cached prefix was rendered with
  bool thinking_at_start = false;   // enable_thinking the cached prefix was rendered with
  bool cache_valid = true;          // false after an uncommitted turn: the next turn re-prefills
  std::vector<ToolCall> pending;    // ok tool calls awaiting results
  std::vector<float> logits;        // [vocab] of the last position run
  int turns = 0;
  std::atomic<bool> busy{false}, cancel{false};

  ChatResult run_turn(const std::string* user_text, const ToolCall* answered, const std::string& tool_content,
                      const ChatConfig& call_config, const EventCallback& on_event);
  ChatResult run_turn_locked(const std::string* user_text, const ToolCall* answered,
                             const std::string& tool_content, const ChatConfig& call_config,
                             const EventCallback& on_event);
  void clear_cache() {
    cache->reset();
    history.clear();
  }
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

std::unique_ptr<Session> load_session(const std::string& path, const LoadOptions& options,
                                      const SessionOptions& session) {
  auto impl = std::make_unique<Session::Impl>();
  impl->path = path;
  impl->load = options;
  impl->opt = session;
  check(options.max_context > 0 && options.max_chunk > 0, "load_session: max_context and max_chunk must be positive");
  // The tokenizer (about 0.4 s of JSON for Gemma 4's 262k pieces) loads on another thread while
  // the model maps and checks its weights and the KV cache is allocated (the directory is the
  // one io::Checkpoint uses: the path itself, or a single file's folder).
  const std::string dir = fs::is_regular_file(path) ? fs::path(path).parent_path().string() : path;
  const std::string tok_path = (fs::path(dir) / "tokenizer.json").string();
  std::future<text::Tokenizer> tok = std::async(std::launch::async, [tok_path] {
    check(fs::exists(tok_path), tok_path + ": missing (a chat session needs the checkpoint's tokenizer)");
    return text::Tokenizer::from_file(tok_path);
  });
  impl->model = std::make_unique<model::gemma4::Model>(
      path, model::gemma4::ModelOptions{options.threads, options.max_chunk, options.exact, options.int8,
                                        options.interleaved});
  impl->cache = std::make_unique<model::gemma4::KvCache>(impl->model->make_cache(options.max_context));
  impl->tok = std::make_unique<text::Tokenizer>(tok.get());
  check(impl->tok->vocab_size() <= impl->model->config().vocab_size,
        tok_path + ": " + std::to_string(impl->tok->vocab_size()) + " tokens, more than the model's vocab_size " +
            std::to_string(impl->model->config().vocab_size));
  impl->gen = model::gemma4::load_generation_config(impl->model->checkpoint().dir(), impl->model->config());
  impl->logits.resize(size_t(impl->model->config().vocab_size));
  return std::unique_ptr<Session>(new Session(std::move(impl)));
}

ChatResult Session::Impl::run_turn(const std::string* user_text, const ToolCall* answered,
                                   const std::string& tool_content, const ChatConfig& call_config,
                                   const EventCallback& on_event) {
  bool expected = false;
  check(busy.compare_exchange_strong(expected, true), "session: another send is in flight");
  struct Release { std::atomic<bool>& b; ~Release() { b = false; } } release{busy};
  cancel = false;
  try {
    return run_turn_locked(user_text, answered, tool_content, call_config, on_event);
  } catch (...) {
    cache_valid = false;  // the cache may hold part of the failed turn: the next turn re-prefills
    throw;
  }
}

ChatResult Session::Impl::run_turn_locked(const std::string* user_text, const ToolCall* answered,
                                          const std::string& tool_content, const ChatConfig& call_config,
                                          const EventCallback& on_event) {

  const ChatConfig cfg = merged(opt.default_config, call_config);
  const bool thinking = thinking_for(cfg.reasoning_effort);
  const int max_new = std::max(0, cfg.max_new_tokens.value_or(2048));
  ordered_json tools = nullptr;
  if (cfg.tools_json && !cfg.tools_json->empty()) {
    tools = ordered_json::parse(*cfg.tools_json, nullptr, false);
    check(!tools.is_discarded() && tools.is_array(), "config.tools_json: not a JSON array of tools");
  }
  const std::string tools_key = tools.is_null() ? "" : tools.dump();

  // The message this turn adds to the conversation.
  ordered_json turn_msg;
  if (user_text) {
    turn_msg = {{"role", "user"}, {"content", *user_text}};
  } else {
    turn_msg = {{"role", "tool"}, {"tool_call_id", answered->id}, {"content", tool_content}};
  }

  // Prompt: a delta on the live cache when it is a strict extension, else a full render (§6.2).
  std::vector<int32_t> prompt;
  const bool can_extend = !history.empty() && cache_valid && thinking == thinking_at_start && tools_key == tools_at_start;
  int cached = 0;
  if (can_extend) {
    prompt = user_text ? engine::user_turn_delta(*tok, *user_text, thinking)
                       : engine::tool_result_delta(*tok, answered->name, answered->id, tool_content, thinking);
    cached = int(history.size());
  } else {
    ordered_json msgs = ordered_json::array();
    if (!opt.system.empty() && (messages.empty() || messages[0]["role"] != "system"))
      msgs.push_back({{"role", "system"}, {"content", opt.system}});
    for (const auto& m : messages) msgs.push_back(m);
    msgs.push_back(turn_msg);
    text::TemplateOptions topt;
    topt.add_generation_prompt = true;
    topt.enable_thinking = thinking;
    prompt = engine::render_prompt_tokens(*tok, msgs, tools, topt);
    clear_cache();
    thinking_at_start = thinking;
    tools_at_start = tools_key;
  }
  const int64_t prompt_total = int64_t(history.size() + prompt.size());
  check(prompt_total < load.max_context,
        "prompt of " + std::to_string(prompt_total) + " tokens does not fit the session's max_context of " +
            std::to_string(load.max_context) + " (LoadOptions::max_context)");

  // Sampler: request, then generation_config.json, then greedy.
  text::GenerationDefaults req, gcfg;
  if (cfg.temperature) req.temperature = *cfg.temperature;
  if (cfg.top_p) req.top_p = *cfg.top_p;
  if (cfg.min_p) req.min_p = *cfg.min_p;
  if (cfg.top_k) req.top_k = *cfg.top_k;
  gcfg.temperature = gen.temperature;
  gcfg.top_p = gen.top_p;
  gcfg.min_p = gen.min_p;
  gcfg.top_k = gen.top_k;
  text::SamplerConfig base;
  base.repetition_penalty = cfg.repetition_penalty.value_or(1.0f);
  base.presence_penalty = cfg.presence_penalty.value_or(0.0f);
  base.frequency_penalty = cfg.frequency_penalty.value_or(0.0f);
  base.seed = cfg.seed ? *cfg.seed : std::random_device{}();
  base.logit_bias = cfg.logit_bias;
  text::Sampler sampler(text::resolve_sampler_config(req, gcfg, base), model->config().vocab_size);

  std::vector<int32_t> seen = history;  // penalty window: prompt and output so far
  seen.insert(seen.end(), prompt.begin(), prompt.end());

  ChatResult r;
  r.thinking_enabled = thinking;
  r.cached_tokens = cached;
  r.prefill_tokens = int(prompt.size());
  r.prompt_tokens = int(prompt_total);

  const auto t_start = Clock::now();
  model->forward(prompt, *cache, logits.data(), false);
  std::vector<int32_t> generated;
  const int64_t vocab = model->config().vocab_size;
  auto sample = [&] {
    if (cfg.logits_processor) cfg.logits_processor(logits.data(), vocab, generated);
    return sampler.sample(logits.data(), seen);
  };
  int32_t token = sample();
  const auto t_first = Clock::now();

  text::OutputParser parser(false);
  text::Detokenizer detok(*tok);
  StopFilter stops(cfg.stop);
  std::vector<text::ParseEvent> events;
  bool stop_hit = false, in_channel = false;
  int channel_tokens = 0;
  int32_t stop_token = -1;
  FinishReason finish = FinishReason::Stop;
  std::string answer;  // content as emitted (after stop-string filtering)

  auto emit = [&](std::string_view text, bool reasoning) {
    if (on_event && !text.empty()) {
      StreamEvent e;
      e.text = std::string(text);
      e.is_reasoning = reasoning;
      on_event(e);
    }
  };
  auto handle_events = [&] {
    for (const auto& e : events) {
      if (e.kind == text::ParseEvent::Kind::Reasoning) {
        emit(e.text, true);
      } else if (e.kind == text::ParseEvent::Kind::Text && !stop_hit) {
        const std::string safe = stops.push(e.text, &stop_hit);
        answer += safe;
        emit(safe, false);
      }
    }
    events.clear();
  };

  for (;;) {
    generated.push_back(token);
    seen.push_back(token);
    const bool is_stop = !cfg.ignore_eos && std::find(std::begin(text::gemma4::kStopTokens),
                                                      std::end(text::gemma4::kStopTokens), token) !=
                                                std::end(text::gemma4::kStopTokens);
    if (is_stop) {
      stop_token = token;
      break;
    }
    if (token == text::gemma4::kChannelOpen) in_channel = true;
    if (token == text::gemma4::kChannelClose || token == text::gemma4::kToolCallOpen) in_channel = false;
    if (in_channel) ++channel_tokens, ++r.reasoning_tokens;
    const std::string piece = detok.push(token);
    r.raw_text += piece;
    parser.feed(piece, events);
    handle_events();
    if (stop_hit) break;
    if (int(generated.size()) >= max_new || cache->pos() + 1 >= load.max_context) {
      finish = FinishReason::Length;
      break;
    }
    if (cancel) {
      finish = FinishReason::Cancelled;
      break;
    }
    model->forward(std::span(&token, 1), *cache, logits.data(), false);
    if (cfg.thinking_token_budget && in_channel && channel_tokens >= *cfg.thinking_token_budget) {
      token = text::gemma4::kChannelClose;  // budget spent: force the channel closed
    } else {
      token = sample();
    }
  }
  const auto t_end = Clock::now();
  if (stop_token >= 0 && stop_token != text::gemma4::kEos) r.raw_text += tok->piece(stop_token);
  const std::string tail = detok.flush();
  r.raw_text += tail;
  parser.feed(tail, events);
  parser.finish(events);
  handle_events();
  if (!stop_hit) {
    const std::string rest = stops.flush();
    answer += rest;
    emit(rest, false);
  }

  r.num_tokens = int(generated.size());
  r.text = stop_hit ? answer : parser.content();
  if (parser.has_reasoning()) r.thinking = parser.reasoning();
  int idx = 0;
  for (const auto& c : parser.tool_calls()) {
    ToolCall tc;
    tc.id = "call_" + std::to_string(turns) + "_" + std::to_string(idx++);
    tc.name = c.name;
    tc.arguments_json = c.arguments.dump();
    tc.status = text::to_string(c.status);
    r.tool_calls.push_back(tc);
  }
  const bool any_ok = std::any_of(r.tool_calls.begin(), r.tool_calls.end(), [](const ToolCall& c) { return c.status == "ok"; });
  if (finish == FinishReason::Stop && (stop_token == text::gemma4::kToolResponseOpen || any_ok))
    finish = FinishReason::ToolCalls;
  r.finish_reason = finish;

  const double ttft = std::chrono::duration<double>(t_first - t_start).count();
  const double dec = std::chrono::duration<double>(t_end - t_first).count();
  r.performance.ttft_ms = ttft * 1e3;
  r.performance.prefill_tokens_per_second = ttft > 0 ? double(prompt.size()) / ttft : 0;
  r.performance.decode_tokens_per_second = generated.size() > 1 && dec > 0 ? double(generated.size() - 1) / dec : 0;

  if (finish == FinishReason::Cancelled) {
    cache_valid = false;  // the cache holds an uncommitted turn; the next turn re-prefills
  } else {
    // Commit: the cache holds the prompt and every generated token but the last sampled one.
    // A stop token is never forwarded (the next delta re-adds it); any other last token is
    // forwarded now so that cache and history agree (a length exit or a stop string).
    history.insert(history.end(), prompt.begin(), prompt.end());
    const size_t n_forwarded = generated.size() - 1;
    history.insert(history.end(), generated.begin(), generated.begin() + long(n_forwarded));
    if (stop_token < 0 && cache->pos() < load.max_context) {
      model->forward(std::span(&generated.back(), 1), *cache, logits.data(), false);
      history.push_back(generated.back());
    }
    // After a stop string or length exit the template's next delta starts with <turn|>, which
    // stands for the unfinished model turn's close: the conversation stays consistent.
    messages.push_back(turn_msg);
    ordered_json a = {{"role", "assistant"}, {"content", r.text}};
    if (any_ok) {
      ordered_json calls = ordered_json::array();
      for (const auto& c : r.tool_calls) {
        if (c.status != "ok") continue;
        calls.push_back({{"id", c.id}, {"type", "function"},
                         {"function", {{"name", c.name}, {"arguments", ordered_json::parse(c.arguments_json)}}}});
      }
      a["tool_calls"] = calls;
    }
    messages.push_back(a);
    pending.clear();
    if (finish == FinishReason::ToolCalls)
      for (const auto& c : r.tool_calls)
        if (c.status == "ok") pending.push_back(c);
    ++turns;
  }
  if (on_event) {
    StreamEvent e;
    e.done = true;
    e.text = r.text;
    e.result = &r;
    on_event(e);
  }
  return r;
}

ChatResult Session::send(const std::string& text, const ChatConfig& config) {
  return send_stream(text, config, {});
}

ChatResult Session::send_stream(const std::string& text, const ChatConfig& config, const EventCallback& on_event) {
  check(impl_->pending.empty(), "session: answer the pending tool call with send_tool_result first");
  return impl_->run_turn(&text, nullptr, "", config, on_event);
}

ChatResult Session::send_tool_result(const std::string& call_id, const std::string& content, const ChatConfig& config) {
  return send_tool_result_stream(call_id, content, config, {});
}

ChatResult Session::send_tool_result_stream(const std::string& call_id, const std::string& content,
                                            const ChatConfig& config, const EventCallback& on_event) {
  check(impl_->pending.size() == 1,
        "session: send_tool_result needs exactly one outstanding tool call (there are " +
            std::to_string(impl_->pending.size()) + ")");
  const ToolCall call = impl_->pending[0];
  check(call.id == call_id, "session: no outstanding tool call with id '" + call_id + "' (expected '" + call.id + "')");
  impl_->pending.clear();
  try {
    return impl_->run_turn(nullptr, &call, content, config, on_event);
  } catch (...) {
    impl_->pending = {call};  // still unanswered
    throw;
  }
}

void Session::reset() {
  check(!impl_->busy, "session: reset while a send is in flight");
  impl_->clear_cache();
  impl_->messages = ordered_json::array();
  impl_->pending.clear();
  impl_->turns = 0;
  impl_->cache_valid = true;
}

void Session::cancel() { impl_->cancel = true; }
void Session::set_system(const std::string& system) { impl_->opt.system = system; }
int Session::turns() const { return impl_->turns; }
int Session::pending_tool_calls() const { return int(impl_->pending.size()); }
const std::vector<int32_t>& Session::history() const { return impl_->history; }
const std::vector<float>& Session::last_logits() const { return impl_->logits; }
std::string Session::model_path() const { return impl_->path; }

}  // namespace mlxq
