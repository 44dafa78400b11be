// Gemma-4 output parsing: tool-call DSL parser (spec §4.7) and streaming state machine (§4.4-4.6).
#include "text/output_parser.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <utility>

#include "core/error.h"

namespace mlxq::text {

using nlohmann::json;

namespace {

constexpr std::string_view kQuote = "<|\"|>";  // the DSL's string delimiter (token 52)
constexpr int kMaxArgDepth = 64;                  // nested {} / [] in tool arguments

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) { ++i; continue; }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + size_t(len) > n) return false;
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += size_t(len);
  }
  return true;
}

// JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. Sets is_int when there
// is no fraction or exponent.
bool json_number_syntax(std::string_view s, bool& is_int) {
  size_t i = 0;
  const size_t n = s.size();
  auto digit = [&](size_t k) { return k < n && s[k] >= '0' && s[k] <= '9'; };
  if (i < n && s[i] == '-') ++i;
  if (!digit(i)) return false;
  if (s[i] == '0') ++i;
  else while (digit(i)) ++i;
  is_int = true;
  if (i < n && s[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
    is_int = false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
    is_int = false;
  }
  return i == n;
}

// A bare scalar (spec §4.7): booleans, the null spellings, numbers, else a string.
json bare_scalar(std::string_view s) {
  if (s == "true") return true;
  if (s == "false") return false;
  if (s == "null" || s == "None" || s == "none" || s == "nil") return nullptr;
  bool is_int = false;
  if (json_number_syntax(s, is_int)) {
    const char* b = s.data();
    const char* e = s.data() + s.size();
    if (is_int) {
      int64_t v = 0;
      if (auto r = std::from_chars(b, e, v); r.ec == std::errc() && r.ptr == e) return v;
      uint64_t u = 0;
      if (auto r = std::from_chars(b, e, u); r.ec == std::errc() && r.ptr == e) return u;
    }
    // from_chars is locale-independent, unlike strtod.
    double d = 0;
    if (auto r = std::from_chars(b, e, d); r.ec == std::errc() && r.ptr == e && std::isfinite(d))
      return d;
  }
  return std::string(s);
}

// Recursive-descent parser over the argument text. Every failure records the first error with
// its byte offset and unwinds by returning false; depth is bounded by kMaxArgDepth.
class DslParser {
 public:
  DslParser(std::string_view s, size_t base) : s_(s), base_(base) {}

  bool parse_object(json& out, int depth) {
    if (depth > kMaxArgDepth) return fail("arguments nested deeper than 64 levels");
    ++pos_;  // '{'
    out = json::object();
    skip_ws();
    if (peek('}')) { ++pos_; return true; }
    while (true) {
      std::string key;
      if (!parse_key(key)) return false;
      json value;
      skip_ws();
      if (!parse_value(value, depth, key)) return false;
      out[key] = std::move(value);  // a repeated key: the last one wins, as in JSON parsers
      skip_ws();
      if (peek(',')) {
        ++pos_;
        skip_ws();
        if (peek('}')) { ++pos_; return true; }  // trailing comma
        continue;
      }
      if (peek('}')) { ++pos_; return true; }
      return fail(at_end() ? "unbalanced '{': missing '}'"
                           : "expected ',' or '}' after value of '" + key + "'");
    }
  }

  bool parse_array(json& out, int depth) {
    if (depth > kMaxArgDepth) return fail("arguments nested deeper than 64 levels");
    ++pos_;  // '['
    out = json::array();
    skip_ws();
    if (peek(']')) { ++pos_; return true; }
    while (true) {
      json value;
      if (!parse_value(value, depth, "array element")) return false;
      out.push_back(std::move(value));
      skip_ws();
      if (peek(',')) {
        ++pos_;
        skip_ws();
        if (peek(']')) { ++pos_; return true; }
        continue;
      }
      if (peek(']')) { ++pos_; return true; }
      return fail(at_end() ? "unbalanced '[': missing ']'" : "expected ',' or ']' in array");
    }
  }

  void skip_ws() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }
  bool at_end() const { return pos_ >= s_.size(); }
  size_t pos() const { return pos_; }
  const std::string& error() const { return error_; }
  bool fail(const std::string& msg) {
    if (error_.empty()) error_ = msg + " at byte " + std::to_string(base_ + pos_);
    return false;
  }

 private:
  bool peek(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  bool peek_quote() const { return s_.substr(pos_).starts_with(kQuote); }

  // At an opening <|"|>: reads up to the next one (no escaping, spec §4.7).
  bool parse_string(std::string& out) {
    const size_t begin = pos_ + kQuote.size();
    const size_t end = s_.find(kQuote, begin);
    if (end == std::string_view::npos) return fail("unterminated <|\"|> string");
    out.assign(s_.substr(begin, end - begin));
    pos_ = end + kQuote.size();
    return true;
  }

  bool parse_key(std::string& key) {
    if (peek_quote()) {
      if (!parse_string(key)) return false;
      skip_ws();
      if (!peek(':')) return fail("expected ':' after key '" + key + "'");
      ++pos_;
      return true;
    }
    const size_t begin = pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == ':') break;
      if (c == ',' || c == '{' || c == '}' || c == '[' || c == ']' || peek_quote())
        return fail("expected ':' after key");
      ++pos_;
    }
    if (at_end()) return fail("expected ':' after key");
    key.assign(trim(s_.substr(begin, pos_ - begin)));
    if (key.empty()) return fail("empty key");
    ++pos_;  // ':'
    return true;
  }

  bool parse_value(json& out, int depth, const std::string& what) {
    if (peek_quote()) {
      std::string s;
      if (!parse_string(s)) return false;
      out = std::move(s);
      return true;
    }
    if (peek('{')) return parse_object(out, depth + 1);
    if (peek('[')) return parse_array(out, depth + 1);
    // A bare scalar runs up to ',', '}' or ']' (spec §4.7); a <|"|> inside one is an error.
    const size_t begin = pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == ',' || c == '}' || c == ']' || peek_quote()) break;
      ++pos_;
    }
    const std::string_view tok = trim(s_.substr(begin, pos_ - begin));
    if (tok.empty()) return fail("missing value for " + (what == "array element" ? what : "'" + what + "'"));
    out = bare_scalar(tok);
    return true;
  }

  std::string_view s_;
  size_t base_;  // offset of s_ in the tool call's raw body, for messages
  size_t pos_ = 0;
  std::string error_;
};

// Whether the text's bracket nesting (ignoring strings) stays within kMaxArgDepth; guards the JSON
// fallback, since nlohmann's dump() and comparisons recurse.
bool shallow(std::string_view s) {
  int depth = 0;
  for (char c : s) {
    if (c == '{' || c == '[') {
      if (++depth > kMaxArgDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

bool all_strings_utf8(const json& j) {
  if (j.is_string()) return valid_utf8(j.get_ref<const std::string&>());
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      if (!valid_utf8(it.key()) || !all_strings_utf8(it.value())) return false;
  } else if (j.is_array()) {
    for (const auto& v : j)
      if (!all_strings_utf8(v)) return false;
  }
  return true;
}

}  // namespace

const char* to_string(ToolCall::Status status) {
  switch (status) {
    case ToolCall::Status::Ok: return "ok";
    case ToolCall::Status::InvalidJson: return "invalid_json";
    case ToolCall::Status::MissingName: return "missing_name";
    case ToolCall::Status::ParseError: return "parse_error";
  }
  return "parse_error";
}

ToolCall parse_tool_call(std::string_view body) {
  ToolCall call;
  call.raw.assign(body);
  call.arguments = json::object();
  auto fail = [&](ToolCall::Status st, std::string msg) {
    call.status = st;
    call.error = std::move(msg);
    call.arguments = json::object();
    return call;
  };

  size_t pos = 0;
  while (pos < body.size() && is_space(body[pos])) ++pos;
  std::string_view rest = body.substr(pos);
  if (rest.starts_with('{'))
    return fail(ToolCall::Status::MissingName, "missing 'call:NAME' before arguments");
  if (!rest.starts_with("call:"))
    return fail(ToolCall::Status::ParseError, "expected 'call:' at byte " + std::to_string(pos));
  pos += 5;
  const size_t name_begin = pos;
  while (pos < body.size() && is_name_char(body[pos])) ++pos;
  call.name.assign(body.substr(name_begin, pos - name_begin));
  if (call.name.empty()) return fail(ToolCall::Status::MissingName, "missing function name after 'call:'");
  while (pos < body.size() && is_space(body[pos])) ++pos;
  if (pos == body.size()) {  // `call:NAME` with no argument object
    call.status = ToolCall::Status::Ok;
    return call;
  }
  if (body[pos] != '{')
    return fail(ToolCall::Status::ParseError,
                "expected '{' after function name at byte " + std::to_string(pos));

  const std::string_view args = body.substr(pos);
  json parsed;
  bool ok = false;
  // A model that writes plain JSON arguments is understood as JSON rather than as DSL (where
  // `"a"` would be a bare key with its quotes kept).
  if (args.find(kQuote) == std::string_view::npos && shallow(args)) {
    json j = json::parse(args.begin(), args.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) {
      parsed = std::move(j);
      ok = true;
    }
  }
  if (!ok) {
    DslParser p(args, pos);
    if (!p.parse_object(parsed, 1)) return fail(ToolCall::Status::ParseError, p.error());
    p.skip_ws();
    if (!p.at_end()) {
      p.fail("unexpected text after the closing '}'");
      return fail(ToolCall::Status::ParseError, p.error());
    }
  }
  if (!all_strings_utf8(parsed))
    return fail(ToolCall::Status::InvalidJson, "a key or string in the arguments is not valid UTF-8");
  call.arguments = std::move(parsed);
  call.status = ToolCall::Status::Ok;
  return call;
}

// ---------------------------------------------------------------------------------------------
// Streaming parser

namespace {

enum Marker {
  kChannelOpen, kChannelClose, kToolCallOpen, kToolCallClose, kToolResponseOpen,
  kToolResponseClose, kToolOpen, kToolClose, kTurnEnd, kTurnStart, kMarkerCount
};
// No marker is a prefix of another, so the first full match at a position is the only one.
constexpr std::string_view kMarkers[kMarkerCount] = {
    "<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
    "<tool_response|>", "<|tool>", "<tool|>", "<turn|>", "<|turn>"};
constexpr unsigned kAllMarkers = (1u << kMarkerCount) - 1;

constexpr int kNone = -1;     // no marker and no possible marker start
constexpr int kPartial = -2;  // the tail from `pos` may still become a marker

struct Hit {
  size_t pos;
  int marker;  // a Marker, kNone or kPartial
};

// Finds the first marker in `mask` in s, or the start of a tail that is a proper prefix of one.
Hit scan(std::string_view s, unsigned mask) {
  for (size_t p = s.find('<'); p != std::string_view::npos; p = s.find('<', p + 1)) {
    const std::string_view rest = s.substr(p);
    for (int m = 0; m < kMarkerCount; ++m)
      if ((mask >> m & 1u) && rest.starts_with(kMarkers[m])) return {p, m};
    for (int m = 0; m < kMarkerCount; ++m)
      if ((mask >> m & 1u) && rest.size() < kMarkers[m].size() && kMarkers[m].starts_with(rest))
        return {p, kPartial};
  }
  return {s.size(), kNone};
}

constexpr std::string_view kLabel = "thought\n";  // the thought channel's name line (spec §4.4)

}  // namespace

OutputParser::OutputParser(bool start_in_reasoning) {
  if (start_in_reasoning) {
    state_ = State::Reasoning;
    start_block();
  }
}

void OutputParser::feed(std::string_view chunk, std::vector<ParseEvent>& out) {
  check(!finished_, "OutputParser::feed called after finish()");
  out_ = &out;
  out_begin_ = out.size();
  buf_.append(chunk);
  process();
  out_ = nullptr;
}

void OutputParser::finish(std::vector<ParseEvent>& out) {
  if (finished_) return;
  out_ = &out;
  out_begin_ = out.size();
  // What is left in buf_ is a marker prefix that never completed: plain text after all.
  switch (state_) {
    case State::Content:
      content_text(buf_);
      break;
    case State::Reasoning:
      reasoning_text(buf_);
      end_block();
      break;
    case State::ToolCall:
      call_body_ += buf_;
      emit_unterminated_call();
      break;
    case State::Swallow:
    case State::TurnRole:
    case State::Done:
      break;
  }
  buf_.clear();
  content_ws_.clear();  // trailing whitespace of the answer is trimmed
  state_ = State::Done;
  finished_ = true;
  out_ = nullptr;
}

void OutputParser::process() {
  size_t pos = 0;
  const std::string_view buf = buf_;
  while (pos < buf.size()) {
    const std::string_view rest = buf.substr(pos);
    if (state_ == State::Done) {
      pos = buf.size();
      break;
    }
    if (state_ == State::TurnRole) {
      // Drop the role name after <|turn> and its newline; anything else ends the role early.
      const char c = rest.front();
      if (((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') && role_len_ < 32) {
        ++role_len_;
        ++pos;
        continue;
      }
      if (c == '\n') ++pos;
      state_ = State::Content;
      continue;
    }
    unsigned mask = kAllMarkers;
    if (state_ == State::ToolCall)
      mask = 1u << kToolCallClose | 1u << kToolCallOpen | 1u << kToolResponseOpen | 1u << kTurnEnd;
    else if (state_ == State::Swallow)
      mask = 1u << swallow_close_;
    const Hit hit = scan(rest, mask);
    const std::string_view text = rest.substr(0, hit.pos);
    switch (state_) {
      case State::Content: content_text(text); break;
      case State::Reasoning: reasoning_text(text); break;
      case State::ToolCall: call_body_ += text; break;
      default: break;  // swallowed
    }
    pos += hit.pos;
    if (hit.marker < 0) break;  // kNone: all consumed; kPartial: wait for more bytes
    pos += kMarkers[hit.marker].size();
    handle_marker(hit.marker);
  }
  buf_.erase(0, pos);
}

void OutputParser::handle_marker(int marker) {
  switch (state_) {
    case State::Content:
    case State::Reasoning: {
      const bool in_reasoning = state_ == State::Reasoning;
      switch (marker) {
        case kChannelOpen:
          if (in_reasoning) end_block();  // an unclosed block followed by a new one
          state_ = State::Reasoning;
          start_block();
          break;
        case kChannelClose:
          if (in_reasoning) end_block();  // else a stray close: dropped
          state_ = State::Content;
          break;
        case kToolCallOpen:
          if (in_reasoning) end_block();  // <|tool_call> implicitly ends reasoning
          call_body_.clear();
          state_ = State::ToolCall;
          break;
        case kToolResponseOpen:
        case kToolOpen:
          swallow_close_ = marker == kToolOpen ? kToolClose : kToolResponseClose;
          swallow_return_ = state_;
          state_ = State::Swallow;
          break;
        case kTurnEnd:
          if (in_reasoning) end_block();
          state_ = State::Done;
          break;
        case kTurnStart:
          if (in_reasoning) end_block();
          role_len_ = 0;
          state_ = State::TurnRole;
          break;
        default:  // stray <tool_call|>, <tool_response|>, <tool|>: dropped
          break;
      }
      break;
    }
    case State::ToolCall:
      if (marker == kToolCallClose) {
        emit_call(parse_tool_call(call_body_));
        call_body_.clear();
        state_ = State::Content;
        break;
      }
      emit_unterminated_call();
      if (marker == kToolCallOpen) {
        state_ = State::ToolCall;  // a new call starts
      } else if (marker == kToolResponseOpen) {
        swallow_close_ = kToolResponseClose;
        swallow_return_ = State::Content;
        state_ = State::Swallow;
      } else {
        state_ = State::Done;  // <turn|>
      }
      break;
    case State::Swallow:
      state_ = swallow_return_;
      break;
    case State::TurnRole:
    case State::Done:
      break;
  }
}

void OutputParser::start_block() {
  has_reasoning_ = true;
  label_pending_ = true;
  label_.clear();
  block_has_text_ = false;
  reasoning_ws_.clear();
}

void OutputParser::end_block() {
  if (label_pending_) {
    label_pending_ = false;
    // A block that closes right after its name (`<|channel>thought<channel|>`) is empty.
    if (label_ != "thought") reasoning_trimmed(label_);
    label_.clear();
  }
  reasoning_ws_.clear();  // trailing whitespace of the block is trimmed
  block_has_text_ = false;
}

void OutputParser::content_text(std::string_view s) {
  if (!content_started_) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    if (s.empty()) return;
    content_started_ = true;
  }
  size_t end = s.size();
  while (end > 0 && is_space(s[end - 1])) --end;
  if (end == 0) {
    content_ws_.append(s);
    return;
  }
  std::string delta = std::move(content_ws_);
  delta.append(s.substr(0, end));
  content_ws_.assign(s.substr(end));
  push(ParseEvent::Kind::Text, delta);
}

void OutputParser::reasoning_text(std::string_view s) {
  if (label_pending_) {
    // Hold the first bytes of the block until they show whether it starts with `thought\n`.
    const size_t take = std::min(s.size(), kLabel.size() - label_.size());
    label_.append(s.substr(0, take));
    s.remove_prefix(take);
    if (label_.size() < kLabel.size()) return;
    label_pending_ = false;
    if (label_ != kLabel) reasoning_trimmed(label_);
    label_.clear();
  }
  reasoning_trimmed(s);
}

void OutputParser::reasoning_trimmed(std::string_view s) {
  if (!block_has_text_) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    if (s.empty()) return;
    block_has_text_ = true;
    if (!reasoning_.empty()) reasoning_ws_ = "\n";  // separates non-empty blocks
  }
  size_t end = s.size();
  while (end > 0 && is_space(s[end - 1])) --end;
  if (end == 0) {
    reasoning_ws_.append(s);
    return;
  }
  std::string delta = std::move(reasoning_ws_);
  delta.append(s.substr(0, end));
  reasoning_ws_.assign(s.substr(end));
  push(ParseEvent::Kind::Reasoning, delta);
}

void OutputParser::emit_call(ToolCall call) {
  tool_calls_.push_back(call);
  ParseEvent ev;
  ev.kind = ParseEvent::Kind::ToolCall;
  ev.call = std::move(call);
  out_->push_back(std::move(ev));
}

void OutputParser::emit_unterminated_call() {
  ToolCall call = parse_tool_call(call_body_);  // for the name, when there is one
  call.status = ToolCall::Status::ParseError;
  call.arguments = json::object();
  call.error = "unterminated tool call: no <tool_call|>";
  call_body_.clear();
  emit_call(std::move(call));
}

void OutputParser::push(ParseEvent::Kind kind, std::string_view text) {
  if (text.empty()) return;
  (kind == ParseEvent::Kind::Text ? content_ : reasoning_).append(text);
  if (out_->size() > out_begin_ && out_->back().kind == kind) {
    out_->back().text.append(text);
    return;
  }
  ParseEvent ev;
  ev.kind = kind;
  ev.text.assign(text);
  out_->push_back(std::move(ev));
}

ParseResult parse_output(std::string_view whole, bool start_in_reasoning) {
  OutputParser parser(start_in_reasoning);
  std::vector<ParseEvent> events;
  parser.feed(whole, events);
  parser.finish(events);
  return parser.result();
}

}  // namespace mlxq::text
