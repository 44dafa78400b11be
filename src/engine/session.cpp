// Session: one conversation on a loaded model (model_impl.h). A turn goes in four steps:
// prompt (a delta on the live KV cache when possible, else a full render), sampler, decode loop
// (prefill, then sample and decode until a stop token, the length limit, a stop string or a
// cancel, streaming parsed deltas) and commit. Timing and KV-reuse rules follow
// session-and-benchmark.md §5.3 and §6.2. The forward passes go through the model's scheduler,
// so sessions on one model may run turns on different threads.
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "engine/answer_stream.h"
#include "engine/images.h"
#include "engine/model_impl.h"
#include "engine/prompt.h"
#include "core/mapped_file.h"
#include "mlxq/session.h"
#include "model/gemma4/vision.h"
#include "text/chat_template.h"
#include "text/gemma4_tokens.h"
#include "text/sampler.h"

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
using engine::AnswerStream;

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

}  // namespace

ImageInput ImageInput::from_file(const std::string& path) {
  const MappedFile f(path);
  return ImageInput{std::vector<uint8_t>(f.data(), f.data() + f.size()), path};
}

struct Session::Impl {
  using ImagePtr = std::shared_ptr<engine::PromptImage>;
  std::shared_ptr<Model> owner;  // keeps the model alive
  Model::Impl& m;
  SessionOptions opt;
  int64_t max_context;
  model::gemma4::KvCache cache;
  std::vector<int32_t> history;     // tokens whose KV is in the cache
  std::vector<uint64_t> keys;       // per history token: 0, or its image's key (reuse compares both)
  std::vector<ImagePtr> images;     // the committed conversation's images, in prompt order
  ordered_json messages = ordered_json::array();  // committed conversation, for full re-renders
  std::string tools_at_start;       // tools JSON the cached prefix was rendered with
  bool thinking_at_start = false;   // enable_thinking the cached prefix was rendered with
  bool cache_valid = true;          // false after an uncommitted turn: the next turn re-prefills
  std::vector<ToolCall> pending;    // ok tool calls awaiting results
  std::vector<float> logits;        // [vocab] of the last position run
  int turns = 0;
  std::atomic<bool> busy{false}, cancel{false};

  Impl(std::shared_ptr<Model> model, const SessionOptions& options)
      : owner(std::move(model)),
        m(owner->impl()),
        opt(options),
        max_context(options.max_context > 0 ? options.max_context : m.load.max_context),
        cache(m.net->make_cache(max_context, options.kv_rollback)),
        logits(size_t(m.net->config().vocab_size)) {
    ++m.sessions;
  }
  ~Impl() { --m.sessions; }

  // What a turn adds: a user message, or the result of the pending tool call; or a whole new
  // conversation (send_messages).
  struct TurnInput {
    const std::string* user_text = nullptr;
    const ToolCall* answered = nullptr;
    std::string tool_content;
    const std::string* messages_json = nullptr;
    const std::vector<ImageInput>* images = nullptr;  // with user_text
  };
  struct Prompt {
    std::vector<int32_t> tokens;  // to prefill
    std::vector<uint64_t> keys;   // per token (engine::ExpandedPrompt)
    std::vector<ImagePtr> images; // the conversation's images after this turn, in prompt order
    size_t first_prefilled = 0;   // images[first_prefilled..] have their runs in `tokens`
    int cached = 0;               // reused prefix
    ordered_json message;         // the message this turn adds to the conversation
    ordered_json conversation;    // send_messages: the conversation that replaces the session's
  };
  struct Decoded {
    std::vector<int32_t> generated;
    int32_t stop_token = -1;  // the stop token sampled, or -1
    FinishReason finish = FinishReason::Stop;
  };

  ChatResult run_turn(const TurnInput& in, const ChatConfig& call_config, const EventCallback& on_event);
  ChatResult turn(const TurnInput& in, const ChatConfig& cfg, const EventCallback& on_event);
  Prompt build_prompt(const TurnInput& in, const ChatConfig& cfg, bool thinking);
  Prompt conversation_prompt(const std::string& messages_json, const ChatConfig& cfg, bool thinking);
  text::Sampler make_sampler(const ChatConfig& cfg) const;
  Decoded decode(const Prompt& prompt, const ChatConfig& cfg, text::Sampler& sampler, AnswerStream& out,
                 ChatResult& r);
  void commit(const Prompt& prompt, const Decoded& d, const ChatResult& r);
  void clear_cache() {
    cache.reset();
    history.clear();
    keys.clear();
  }
  ImagePtr image_for(std::span<const uint8_t> bytes, const std::string& name) const;
  engine::ExpandedPrompt expand(const std::vector<int32_t>& tokens, std::span<const ImagePtr> ims) const;
  std::vector<float> soft_tokens(const Prompt& p);
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

std::unique_ptr<Session> Model::create_session() { return create_session(SessionOptions{}); }

std::unique_ptr<Session> Model::create_session(const SessionOptions& options) {
  check(options.max_context >= 0, "SessionOptions::max_context must not be negative");
  return std::unique_ptr<Session>(new Session(std::make_unique<Session::Impl>(shared_from_this(), options)));
}

std::unique_ptr<Session> load_session(const std::string& path, const LoadOptions& options,
                                      const SessionOptions& session) {
  return load_model(path, options)->create_session(session);
}

ChatResult Session::Impl::run_turn(const TurnInput& in, const ChatConfig& call_config, const EventCallback& on_event) {
  bool expected = false;
  check(busy.compare_exchange_strong(expected, true), "session: another send is in flight");
  struct Release { std::atomic<bool>& b; ~Release() { b = false; } } release{busy};
  cancel = false;
  try {
    return turn(in, merged(opt.default_config, call_config), on_event);
  } catch (...) {
    cache_valid = false;  // the cache may hold part of the failed turn: the next turn re-prefills
    throw;
  }
}

// A turn in four steps: prompt, sampler, decode loop, commit.
ChatResult Session::Impl::turn(const TurnInput& in, const ChatConfig& cfg, const EventCallback& on_event) {
  const bool thinking = thinking_for(cfg.reasoning_effort);
  const Prompt prompt = build_prompt(in, cfg, thinking);
  text::Sampler sampler = make_sampler(cfg);

  ChatResult r;
  r.thinking_enabled = thinking;
  r.cached_tokens = prompt.cached;
  r.prefill_tokens = int(prompt.tokens.size());
  r.prompt_tokens = int(history.size() + prompt.tokens.size());
  AnswerStream out(*m.tok, cfg.stop, on_event);
  const Decoded d = decode(prompt, cfg, sampler, out, r);
  out.finish(d.stop_token, turns, r);

  r.num_tokens = int(d.generated.size());
  const bool any_ok = std::any_of(r.tool_calls.begin(), r.tool_calls.end(), [](const ToolCall& c) { return c.status == "ok"; });
  r.finish_reason = d.finish;
  if (d.finish == FinishReason::Stop && (d.stop_token == text::gemma4::kToolResponseOpen || any_ok))
    r.finish_reason = FinishReason::ToolCalls;

  if (r.finish_reason == FinishReason::Cancelled) {
    cache_valid = false;  // the cache holds an uncommitted turn; the next turn re-prefills
  } else {
    commit(prompt, d, r);
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

// Step 1: a delta on the live cache when it is a strict extension, else a full render (§6.2).
Session::Impl::Prompt Session::Impl::build_prompt(const TurnInput& in, const ChatConfig& cfg, bool thinking) {
  if (in.messages_json) return conversation_prompt(*in.messages_json, cfg, thinking);
  ordered_json tools = nullptr;
  if (cfg.tools_json && !cfg.tools_json->empty()) {
    tools = ordered_json::parse(*cfg.tools_json, nullptr, false);
    check(!tools.is_discarded() && tools.is_array(), "config.tools_json: not a JSON array of tools");
  }
  const std::string tools_key = tools.is_null() ? "" : tools.dump();

  Prompt p;
  p.images = images;
  const size_t fresh = in.images ? in.images->size() : 0;
  for (size_t i = 0; i < fresh; ++i) {
    const ImageInput& im = (*in.images)[i];
    p.images.push_back(image_for(im.bytes, im.name.empty() ? "image " + std::to_string(i + 1) : im.name));
  }
  if (in.user_text && fresh > 0) {  // content parts as the template reads them: images, then the text
    ordered_json parts = ordered_json::array();
    for (size_t i = 0; i < fresh; ++i) parts.push_back({{"type", "image"}});
    parts.push_back({{"type", "text"}, {"text", *in.user_text}});
    p.message = {{"role", "user"}, {"content", parts}};
  } else if (in.user_text) {
    p.message = {{"role", "user"}, {"content", *in.user_text}};
  } else {
    p.message = {{"role", "tool"}, {"tool_call_id", in.answered->id}, {"content", in.tool_content}};
  }
  const bool can_extend = !history.empty() && cache_valid && thinking == thinking_at_start && tools_key == tools_at_start;
  if (can_extend) {
    const std::vector<int32_t> delta =
        in.user_text ? engine::user_turn_delta(*m.tok, *in.user_text, thinking, fresh)
                     : engine::tool_result_delta(*m.tok, in.answered->name, in.answered->id, in.tool_content, thinking);
    p.first_prefilled = images.size();
    engine::ExpandedPrompt e = expand(delta, std::span(p.images).subspan(p.first_prefilled));
    p.tokens = std::move(e.tokens);
    p.keys = std::move(e.keys);
    p.cached = int(history.size());
  } else {
    ordered_json msgs = ordered_json::array();
    if (!opt.system.empty() && (messages.empty() || messages[0]["role"] != "system"))
      msgs.push_back({{"role", "system"}, {"content", opt.system}});
    for (const auto& msg : messages) msgs.push_back(msg);
    msgs.push_back(p.message);
    text::TemplateOptions topt;
    topt.add_generation_prompt = true;
    topt.enable_thinking = thinking;
    engine::ExpandedPrompt e = expand(engine::render_prompt_tokens(*m.tok, msgs, tools, topt), p.images);
    p.tokens = std::move(e.tokens);
    p.keys = std::move(e.keys);
    clear_cache();
    thinking_at_start = thinking;
    tools_at_start = tools_key;
  }
  const int64_t total = int64_t(history.size() + p.tokens.size());
  check(total < max_context, "prompt of " + std::to_string(total) + " tokens does not fit the session's max_context of " +
                                 std::to_string(max_context) + " (LoadOptions / SessionOptions::max_context)");
  return p;
}

// Step 1 for send_messages: the whole conversation rendered; the cache keeps the longest prefix
// it shares with what the session holds (history is what the cache holds, also after a cancelled
// turn), stepped back at least one token so the last position's logits come out of the prefill.
// A sliding-window ring that no longer reaches that far back means a full prefill.
Session::Impl::Prompt Session::Impl::conversation_prompt(const std::string& messages_json, const ChatConfig& cfg,
                                                         bool thinking) {
  const std::string tools_text = cfg.tools_json.value_or("");
  engine::Conversation conv = engine::parse_conversation(messages_json, tools_text);
  const std::vector<engine::ImageBytes> raw = engine::take_message_images(conv.messages);
  Prompt p;
  for (const engine::ImageBytes& im : raw) p.images.push_back(image_for(im.bytes, im.name));
  text::TemplateOptions topt;
  topt.add_generation_prompt = true;
  topt.enable_thinking = thinking;
  engine::ExpandedPrompt e = expand(engine::render_prompt_tokens(*m.tok, conv.messages, conv.tools, topt), p.images);
  p.tokens = std::move(e.tokens);
  p.keys = std::move(e.keys);
  p.conversation = std::move(conv.messages);  // image parts now {"type": "image"}: p.images hold them
  const int64_t total = int64_t(p.tokens.size());
  check(total < max_context, "prompt of " + std::to_string(total) + " tokens does not fit the session's max_context of " +
                                 std::to_string(max_context) + " (LoadOptions / SessionOptions::max_context)");
  size_t keep = 0;
  while (keep < history.size() && keep < p.tokens.size() && history[keep] == p.tokens[keep] && keys[keep] == p.keys[keep])
    ++keep;
  if (keep == p.tokens.size()) --keep;
  const int32_t soft = int32_t(m.net->config().image_token_id);
  engine::PrefixCut cut = engine::cut_before_runs(p.tokens, keep, soft);  // an image run goes whole
  if (!cache.can_truncate(int64_t(cut.keep))) cut = {};
  keep = cut.keep;
  cache.truncate(int64_t(keep));
  history.resize(keep);
  keys.resize(keep);
  p.cached = int(keep);
  p.first_prefilled = cut.first_image;
  p.tokens.erase(p.tokens.begin(), p.tokens.begin() + std::ptrdiff_t(keep));
  p.keys.erase(p.keys.begin(), p.keys.begin() + std::ptrdiff_t(keep));
  tools_at_start = conv.tools.is_null() ? "" : conv.tools.dump();
  thinking_at_start = thinking;
  cache_valid = true;
  return p;
}

// An image of this turn: one the conversation already holds (same bytes, so its embedding is
// reused), or decoded and sized now. A model without a vision tower refuses it.
Session::Impl::ImagePtr Session::Impl::image_for(std::span<const uint8_t> bytes, const std::string& name) const {
  if (!m.net->has_vision()) m.net->vision();  // throws, saying what is missing
  const uint64_t key = engine::image_key(bytes, m.image_budget);
  for (const ImagePtr& im : images)
    if (im->key == key) return im;
  return std::make_shared<engine::PromptImage>(
      engine::prepare_image(bytes, name, *m.net->config().vision, m.image_budget));
}

engine::ExpandedPrompt Session::Impl::expand(const std::vector<int32_t>& tokens, std::span<const ImagePtr> ims) const {
  std::vector<const engine::PromptImage*> v;
  for (const ImagePtr& im : ims) v.push_back(im.get());
  return engine::expand_images(tokens, v, m.image_ids);
}

// The soft tokens of the images whose runs this prefill holds, in order; the tower runs (in turn
// with other sessions' forward passes) for those not yet embedded, whose pixels are then dropped.
std::vector<float> Session::Impl::soft_tokens(const Prompt& p) {
  std::vector<engine::PromptImage*> todo;
  for (size_t i = p.first_prefilled; i < p.images.size(); ++i)
    if (p.images[i]->embedding.empty()) todo.push_back(p.images[i].get());
  if (!todo.empty()) {
    m.scheduler->exclusive([&] {
      model::gemma4::VisionTower& tower = m.net->vision();
      for (engine::PromptImage* im : todo) {
        const io::Image& px = im->pixels;
        im->embedding = tower.embed(model::gemma4::patchify(px.rgb.data(), px.width, px.height, tower.config()));
        im->pixels = {};
      }
    });
  }
  std::vector<float> out;
  for (size_t i = p.first_prefilled; i < p.images.size(); ++i)
    out.insert(out.end(), p.images[i]->embedding.begin(), p.images[i]->embedding.end());
  return out;
}

// Step 2: the request's settings, then generation_config.json's, then greedy.
text::Sampler Session::Impl::make_sampler(const ChatConfig& cfg) const {
  text::GenerationDefaults req, gcfg;
  if (cfg.temperature) req.temperature = *cfg.temperature;
  if (cfg.top_p) req.top_p = *cfg.top_p;
  if (cfg.min_p) req.min_p = *cfg.min_p;
  if (cfg.top_k) req.top_k = *cfg.top_k;
  gcfg.temperature = m.gen.temperature;
  gcfg.top_p = m.gen.top_p;
  gcfg.min_p = m.gen.min_p;
  gcfg.top_k = m.gen.top_k;
  text::SamplerConfig base;
  base.repetition_penalty = cfg.repetition_penalty.value_or(1.0f);
  base.presence_penalty = cfg.presence_penalty.value_or(0.0f);
  base.frequency_penalty = cfg.frequency_penalty.value_or(0.0f);
  base.seed = cfg.seed ? *cfg.seed : std::random_device{}();
  base.logit_bias = cfg.logit_bias;
  return text::Sampler(text::resolve_sampler_config(req, gcfg, base), m.net->config().vocab_size);
}

// Step 3: prefill, then sample / decode until a stop token, the length limit, a stop string or a
// cancel. Timing as §5.3 defines it.
Session::Impl::Decoded Session::Impl::decode(const Prompt& prompt, const ChatConfig& cfg, text::Sampler& sampler,
                                             AnswerStream& out, ChatResult& r) {
  const int max_new = std::max(0, cfg.max_new_tokens.value_or(2048));
  const int64_t vocab = m.net->config().vocab_size;
  std::vector<int32_t> seen = history;  // penalty window: prompt and output so far
  seen.insert(seen.end(), prompt.tokens.begin(), prompt.tokens.end());
  Decoded d;
  auto sample = [&] {
    if (cfg.logits_processor) cfg.logits_processor(logits.data(), vocab, d.generated);
    return sampler.sample(logits.data(), seen);
  };

  const auto t_start = Clock::now();
  const std::vector<float> soft = soft_tokens(prompt);
  r.performance.vision_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_start).count();
  m.scheduler->forward(prompt.tokens, cache, logits.data(), soft.empty() ? nullptr : soft.data());
  int32_t token = sample();
  const auto t_first = Clock::now();
  bool in_channel = false;
  int channel_tokens = 0;
  for (;;) {
    d.generated.push_back(token);
    seen.push_back(token);
    if (!cfg.ignore_eos && text::gemma4::is_stop_token(token)) {
      d.stop_token = token;
      break;
    }
    if (token == text::gemma4::kChannelOpen) in_channel = true;
    if (token == text::gemma4::kChannelClose || token == text::gemma4::kToolCallOpen) in_channel = false;
    if (in_channel) ++channel_tokens, ++r.reasoning_tokens;
    if (out.push(token)) break;  // a stop string completed
    if (int(d.generated.size()) >= max_new || cache.pos() + 1 >= max_context) {
      d.finish = FinishReason::Length;
      break;
    }
    if (cancel) {
      d.finish = FinishReason::Cancelled;
      break;
    }
    m.scheduler->forward(std::span(&token, 1), cache, logits.data());
    if (cfg.thinking_token_budget && in_channel && channel_tokens >= *cfg.thinking_token_budget) {
      token = text::gemma4::kChannelClose;  // budget spent: force the channel closed
    } else {
      token = sample();
    }
  }
  const auto t_end = Clock::now();
  const double ttft = std::chrono::duration<double>(t_first - t_start).count();
  const double dec = std::chrono::duration<double>(t_end - t_first).count();
  const size_t n = d.generated.size();
  r.performance.ttft_ms = ttft * 1e3;
  r.performance.prefill_tokens_per_second = ttft > 0 ? double(prompt.tokens.size()) / ttft : 0;
  r.performance.decode_tokens_per_second = n > 1 && dec > 0 ? double(n - 1) / dec : 0;
  return d;
}

// Step 4: the cache holds the prompt and every generated token but the last sampled one. A stop
// token is never forwarded (the next delta re-adds it); any other last token is forwarded now so
// that cache and history agree (a length exit or a stop string). After a stop string or length
// exit the template's next delta starts with <turn|>, which stands for the unfinished model
// turn's close: the conversation stays consistent.
void Session::Impl::commit(const Prompt& prompt, const Decoded& d, const ChatResult& r) {
  history.insert(history.end(), prompt.tokens.begin(), prompt.tokens.end());
  history.insert(history.end(), d.generated.begin(), d.generated.end() - 1);
  if (d.stop_token < 0 && cache.pos() < max_context) {
    m.scheduler->forward(std::span(&d.generated.back(), 1), cache, logits.data());
    history.push_back(d.generated.back());
  }
  keys.insert(keys.end(), prompt.keys.begin(), prompt.keys.end());
  keys.resize(history.size(), 0);
  images = prompt.images;
  if (!prompt.conversation.is_null()) {
    messages = prompt.conversation;
  } else {
    messages.push_back(prompt.message);
  }
  ordered_json a = {{"role", "assistant"}, {"content", r.text}};
  ordered_json calls = ordered_json::array();
  for (const auto& c : r.tool_calls) {
    if (c.status != "ok") continue;
    calls.push_back({{"id", c.id}, {"type", "function"},
                     {"function", {{"name", c.name}, {"arguments", ordered_json::parse(c.arguments_json)}}}});
  }
  if (!calls.empty()) a["tool_calls"] = calls;
  messages.push_back(a);
  pending.clear();
  if (r.finish_reason == FinishReason::ToolCalls)
    for (const auto& c : r.tool_calls)
      if (c.status == "ok") pending.push_back(c);
  ++turns;
}

ChatResult Session::send(const std::string& text, const ChatConfig& config) {
  return send_stream(text, config, {});
}

ChatResult Session::send_stream(const std::string& text, const ChatConfig& config, const EventCallback& on_event) {
  return send_stream(text, {}, config, on_event);
}

ChatResult Session::send(const std::string& text, const std::vector<ImageInput>& images, const ChatConfig& config) {
  return send_stream(text, images, config, {});
}

ChatResult Session::send_stream(const std::string& text, const std::vector<ImageInput>& images,
                                const ChatConfig& config, const EventCallback& on_event) {
  check(impl_->pending.empty(), "session: answer the pending tool call with send_tool_result first");
  Impl::TurnInput in;
  in.user_text = &text;
  in.images = &images;
  return impl_->run_turn(in, config, on_event);
}

ChatResult Session::send_messages(const std::string& messages_json, const ChatConfig& config) {
  return send_messages_stream(messages_json, config, {});
}

ChatResult Session::send_messages_stream(const std::string& messages_json, const ChatConfig& config,
                                         const EventCallback& on_event) {
  Impl::TurnInput in;
  in.messages_json = &messages_json;
  return impl_->run_turn(in, config, on_event);
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
  Impl::TurnInput in;
  in.answered = &call;
  in.tool_content = content;
  try {
    return impl_->run_turn(in, config, on_event);
  } catch (...) {
    impl_->pending = {call};  // still unanswered
    throw;
  }
}

void Session::reset() {
  check(!impl_->busy, "session: reset while a send is in flight");
  impl_->clear_cache();
  impl_->messages = ordered_json::array();
  impl_->images.clear();
  impl_->pending.clear();
  impl_->turns = 0;
  impl_->cache_valid = true;
}

void Session::cancel() { impl_->cancel = true; }
void Session::set_system(const std::string& system) { impl_->opt.system = system; }
int Session::turns() const { return impl_->turns; }
int Session::pending_tool_calls() const { return int(impl_->pending.size()); }
bool Session::has_images() const { return !impl_->images.empty(); }
const std::vector<int32_t>& Session::history() const { return impl_->history; }
const std::vector<float>& Session::last_logits() const { return impl_->logits; }
std::string Session::model_path() const { return impl_->m.path; }
const std::shared_ptr<Model>& Session::model() const { return impl_->owner; }
int64_t Session::max_context() const { return impl_->max_context; }
uint64_t Session::kv_cache_bytes() const { return impl_->cache.bytes_held(); }
uint64_t Session::kv_cache_reserved_bytes() const { return impl_->cache.bytes(); }

}  // namespace mlxq
