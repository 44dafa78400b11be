// The public mlxq C++ API, part 2: a chat Session on a loaded Model (model.h): send user turns
// (blocking or streamed), answer tool calls, reset, cancel. Semantics follow mlx-node's
// ChatSession (shared/spec/session-and-benchmark.md §3-§6). Value types and a pimpl; no JSON or
// kernel headers. load_session() is the one-line convenience: a model with one session.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mlxq/model.h"

namespace mlxq {

// Per-turn settings. Unset fields fall back to the session's default config, then to
// generation_config.json, then to the engine default (greedy for temperature).
struct ChatConfig {
  std::optional<int> max_new_tokens;                 // default 2048
  std::optional<float> temperature, top_p, min_p;    // T <= 1e-6: greedy
  std::optional<int> top_k;                          // 0: off
  std::optional<float> repetition_penalty, presence_penalty, frequency_penalty;
  std::optional<uint64_t> seed;                      // same seed, same sampled answer
  std::vector<std::string> stop;                     // stop strings (answer text)
  std::optional<std::string> reasoning_effort;       // none | low (thinking off) | medium | high (on)
  std::optional<int> thinking_token_budget;          // force the thought channel closed after N tokens
  std::optional<std::string> tools_json;             // OpenAI-style tools array, as JSON text
  std::vector<std::pair<int32_t, float>> logit_bias; // (token id, added to its logit)
  bool ignore_eos = false;                           // benchmarks: always generate max_new_tokens
  // Called before each sampling step with the next-token logits (changeable in place) and the
  // tokens generated so far in this turn; for constrained decoding and tests.
  std::function<void(float* logits, int64_t vocab, const std::vector<int32_t>& generated)> logits_processor;
};

struct ToolCall {
  std::string id;              // "call_<turn>_<index>"
  std::string name;
  std::string arguments_json;  // the arguments object as JSON text
  std::string status;          // ok | invalid_json | missing_name | parse_error
};

// Timing as the spec defines it (§5.3): t_start just before prefill, t_first once the first token is
// sampled, t_end after the decode loop.
struct Performance {
  double ttft_ms = 0;                    // t_first - t_start
  double prefill_tokens_per_second = 0;  // prefilled tokens / (t_first - t_start)
  double decode_tokens_per_second = 0;   // (generated - 1) / (t_end - t_first); 0 if generated <= 1
  double vision_ms = 0;                  // of ttft_ms: this turn's new images through the vision tower
};

enum class FinishReason { Stop, Length, ToolCalls, Cancelled, Error };
const char* to_string(FinishReason r);  // "stop", "length", "tool_calls", "cancelled", "error"

struct ChatResult {
  std::string text;                     // the answer: channels and tool calls removed
  std::optional<std::string> thinking;  // reasoning, label stripped; unset if no thought channel
  std::vector<ToolCall> tool_calls;
  FinishReason finish_reason = FinishReason::Stop;
  std::string raw_text;                 // everything generated, special markers kept
  bool thinking_enabled = false;
  int num_tokens = 0;                   // generated tokens (a sampled stop token included)
  int prompt_tokens = 0;                // the whole prompt, not just the prefilled delta
  int cached_tokens = 0;                // reused prefix length (0 on a miss)
  int prefill_tokens = 0;               // tokens actually prefilled this turn
  int reasoning_tokens = 0;             // tokens generated inside the thought channel
  Performance performance;
};

// A streamed event: a delta (done == false) or the final event (done == true, result set).
struct StreamEvent {
  bool done = false;
  std::string text;
  bool is_reasoning = false;
  const ChatResult* result = nullptr;
};
using EventCallback = std::function<void(const StreamEvent&)>;

// An image for a user turn: an encoded file's bytes (PNG, JPEG, WebP, BMP or GIF), which the
// vision tower sees at the model's soft-token budget (LoadOptions::max_soft_tokens). Errors about
// it start with `name`.
struct ImageInput {
  std::vector<uint8_t> bytes;
  std::string name;
  static ImageInput from_file(const std::string& path);  // throws Error naming the file
};

struct SessionOptions {
  std::string system;          // prepended while the history is empty
  ChatConfig default_config;
  int64_t max_context = 0;     // KV-cache positions; 0: the model's LoadOptions::max_context
  // Extra positions the sliding-window layers keep so that send_messages can step the cache back
  // that far (beyond one prefill chunk) and keep a shared prefix; 0: one chunk's worth.
  int64_t kv_rollback = 0;
};

class Session {
 public:
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  ChatResult send(const std::string& text, const ChatConfig& config = {});
  ChatResult send_stream(const std::string& text, const ChatConfig& config, const EventCallback& on_event);
  // A user turn with images, placed before the text (content parts [image..., text]). Later turns
  // see them in the history; a model without a vision tower throws Error.
  ChatResult send(const std::string& text, const std::vector<ImageInput>& images, const ChatConfig& config = {});
  ChatResult send_stream(const std::string& text, const std::vector<ImageInput>& images, const ChatConfig& config,
                         const EventCallback& on_event);
  // Answers the one outstanding `ok` tool call of the last turn; the model continues its turn.
  ChatResult send_tool_result(const std::string& call_id, const std::string& content, const ChatConfig& config = {});
  ChatResult send_tool_result_stream(const std::string& call_id, const std::string& content,
                                     const ChatConfig& config, const EventCallback& on_event);
  // Replaces the conversation with `messages_json` (OpenAI chat messages, JSON text: system, user
  // (content a string or parts: text, and image_url with a base64 data URL), assistant with
  // tool_calls, tool) and generates the next assistant turn, with the tools in
  // config.tools_json. The KV cache keeps the longest prefix the new prompt shares with what it
  // holds (a server slot reusing a chat's earlier turns); the rest is prefilled. Throws
  // mlxq::Error for malformed messages or a prompt over max_context.
  ChatResult send_messages(const std::string& messages_json, const ChatConfig& config = {});
  ChatResult send_messages_stream(const std::string& messages_json, const ChatConfig& config,
                                  const EventCallback& on_event);
  // Clears the history and the KV cache. Throws while a send is in flight.
  void reset();
  // Stops the send in flight at the next token (callable from any thread); its turn ends with
  // finish reason "cancelled" and is not committed.
  void cancel();

  void set_system(const std::string& system);  // takes effect while the history is empty
  int turns() const;
  int pending_tool_calls() const;
  bool has_images() const;  // the conversation holds images
  const std::vector<int32_t>& history() const;  // tokens in the KV cache, in order
  // Logits of the last position prefilled or decoded (tests compare cached and fresh prefills).
  const std::vector<float>& last_logits() const;
  std::string model_path() const;
  const std::shared_ptr<Model>& model() const;  // the model this session runs on
  int64_t max_context() const;
  // Memory of this session's KV cache: the bytes of the positions it holds now, and the bytes
  // reserved for max_context (address space; the OS commits pages only as positions are written).
  uint64_t kv_cache_bytes() const;
  uint64_t kv_cache_reserved_bytes() const;

 private:
  friend class Model;
  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Opens a checkpoint directory (config.json, safetensors, tokenizer.json) as a chat session: the
// same as load_model(path, options)->create_session(session).
std::unique_ptr<Session> load_session(const std::string& path, const LoadOptions& options = {},
                                      const SessionOptions& session = {});

}  // namespace mlxq
