// Streaming parser for Gemma-4 output (special tokens kept): answer text, reasoning, tool calls.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mlxq::text {

// One `<|tool_call>call:NAME{ARGS}<tool_call|>` (spec §3.6, §4.7).
struct ToolCall {
  enum class Status { Ok, InvalidJson, MissingName, ParseError };

  std::string name;          // [A-Za-z0-9_.-]+ when found, else empty
  nlohmann::json arguments;  // always an object; empty unless status == Ok
  Status status = Status::ParseError;
  std::string raw;    // the text between <|tool_call> and <tool_call|>, verbatim
  std::string error;  // why status != Ok, with the byte offset into `raw`; empty when Ok
};

const char* to_string(ToolCall::Status status);  // "ok", "invalid_json", "missing_name", "parse_error"

// Parses a tool-call body such as
//   call:get_weather{city:<|"|>Paris<|"|>,days:3,opts:{a:[1,<|"|>x<|"|>]},flag:true,none:None}
// Never throws (except std::bad_alloc) and never recurses deeper than 64 nested containers,
// whatever the input. Statuses:
//   MissingName  no function name after `call:` (or the body starts with `{`);
//   ParseError   anything structurally wrong: no `call:`, a missing `:` after a key, a missing
//                value, unbalanced brackets, an unterminated <|"|> string, text after the
//                closing `}`, nesting deeper than 64;
//   InvalidJson  well-formed, but a key or string is not valid UTF-8, so it cannot be JSON.
// Accepted beyond the spec: whitespace between tokens, a trailing comma, a call with no
// argument object (`call:get_time` gives {}), and arguments that are a plain JSON object
// (`{"a":"x"}`, used only when the text holds no <|"|> and parses as JSON).
// Bare scalars: true/false; null/None/none/nil -> null; JSON-grammar integers (int64, else
// uint64, else double) and floats (finite only); anything else (e.g. `007`, `1e999`, `abc`) is
// a string, trimmed of surrounding whitespace.
ToolCall parse_tool_call(std::string_view body);

struct ParseEvent {
  enum class Kind { Text, Reasoning, ToolCall };
  Kind kind = Kind::Text;
  std::string text;  // the delta, for Text and Reasoning
  ToolCall call;     // for ToolCall
};

struct ParseResult {
  std::string content;    // answer text, trimmed
  std::string reasoning;  // thought-channel bodies, each trimmed, joined with '\n'
  std::vector<ToolCall> tool_calls;
  bool has_reasoning = false;  // a thought channel was opened, or the parser started in one
                               // (spec §4.4: else `thinking` is null)
};

// Incremental parser for one model turn. Feed decoded text in any chunking; the concatenated
// deltas and the final results do not depend on where the chunks were cut.
//
// Semantics (spec §4.2-§4.6):
//  - `<|channel>` opens a reasoning block, `<channel|>` closes it; the block's leading `thought`
//    label (followed by '\n' or by the block's end) is stripped. Several blocks, empty blocks and
//    blocks anywhere are accepted; a stray `<channel|>` is dropped.
//  - `<|tool_call>` ends any reasoning block and buffers the call until `<tool_call|>`, then emits
//    one ToolCall event; tool-call bytes are never text. A call cut short by end of stream,
//    `<turn|>`, `<|tool_response>` or another `<|tool_call>` is reported as a ParseError call.
//  - `<|tool_response>…<tool_response|>` and `<|tool>…<tool|>` are swallowed as if absent (the
//    state before them resumes). An unclosed one swallows the rest of the stream: a trailing
//    `<|tool_response>` (stop token 50) thus simply ends the output.
//  - `<turn|>` (stop token 106) ends the output; anything after it is ignored.
//  - `<|turn>` plus its role line (`model\n`) is dropped, so a leading `<|turn>model\n` is fine.
//  - Stray closers (`<tool_call|>`, `<tool_response|>`, `<tool|>`) are dropped.
//  - Any suffix that could be the start of a marker is held back until it is decided, so a marker
//    is never split across deltas and never leaks as text.
//  - Trimming: content() is the trimmed concatenation of all text outside channels and calls
//    (interior whitespace, also around removed markers, is kept). Each reasoning block is trimmed
//    (spec §4.4) and non-empty blocks are joined with '\n'. Streaming does this by dropping
//    leading whitespace and holding trailing whitespace back until more text follows, so the
//    deltas always concatenate to content() / reasoning(). Whitespace here is ASCII
//    (space, \t, \n, \r, \f, \v).
//
// Not thread-safe; one parser per generation.
class OutputParser {
 public:
  // start_in_reasoning: the rendered prompt ended inside an open thought channel (spec §4.4), so
  // output starts as reasoning (a leading `thought\n` label is still stripped if it comes).
  explicit OutputParser(bool start_in_reasoning = false);

  // Appends to `out` the events completed by `chunk`. Consecutive deltas of one kind produced
  // by a single call are merged into one event. Throws Error if called after finish().
  void feed(std::string_view chunk, std::vector<ParseEvent>& out);
  // End of stream: flushes held-back text and reports an unterminated tool call. Idempotent.
  void finish(std::vector<ParseEvent>& out);

  const std::string& content() const { return content_; }
  const std::string& reasoning() const { return reasoning_; }
  const std::vector<ToolCall>& tool_calls() const { return tool_calls_; }
  bool has_reasoning() const { return has_reasoning_; }
  bool finished() const { return finished_; }
  ParseResult result() const { return {content_, reasoning_, tool_calls_, has_reasoning_}; }

 private:
  enum class State { Content, Reasoning, ToolCall, Swallow, TurnRole, Done };

  void process();  // consumes buf_ as far as it is decided
  void handle_marker(int marker);
  void start_block();
  void end_block();
  void content_text(std::string_view s);
  void reasoning_text(std::string_view s);
  void reasoning_trimmed(std::string_view s);
  void emit_call(ToolCall call);
  void emit_unterminated_call();
  void push(ParseEvent::Kind kind, std::string_view text);

  State state_ = State::Content;
  std::string buf_;  // undecided input (at most a marker prefix between calls)

  // Content trimming: nothing emitted yet / whitespace held back.
  bool content_started_ = false;
  std::string content_ws_;
  // Reasoning block: label not yet decided (label_ holds up to 8 bytes), text seen in this block,
  // held trailing whitespace.
  bool label_pending_ = false;
  std::string label_;
  bool block_has_text_ = false;
  std::string reasoning_ws_;

  std::string call_body_;           // tool call being buffered
  int swallow_close_ = 0;           // marker that ends State::Swallow
  State swallow_return_ = State::Content;
  int role_len_ = 0;                // role-name bytes dropped after <|turn>

  std::string content_, reasoning_;
  std::vector<ToolCall> tool_calls_;
  bool has_reasoning_ = false;
  bool finished_ = false;

  std::vector<ParseEvent>* out_ = nullptr;  // sink of the current feed()/finish()
  size_t out_begin_ = 0;                    // events before this index belong to earlier calls
};

// Runs an OutputParser over a whole completion.
ParseResult parse_output(std::string_view whole, bool start_in_reasoning = false);

}  // namespace mlxq::text
