// AnswerStream and StopFilter (answer_stream.h).
#include "engine/answer_stream.h"

#include <algorithm>

#include "text/gemma4_tokens.h"

namespace mlxq::engine {

StopFilter::StopFilter(const std::vector<std::string>& stops) : stops_(stops) {
  for (const auto& s : stops_) hold_ = std::max(hold_, s.size());
}

std::string StopFilter::push(const std::string& delta, bool* hit) {
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

AnswerStream::AnswerStream(const text::Tokenizer& tok, const std::vector<std::string>& stops,
                           const EventCallback& on_event)
    : tok_(tok), on_event_(on_event), detok_(tok), stops_(stops) {}

void AnswerStream::emit(std::string_view text, bool reasoning) {
  if (on_event_ && !text.empty()) {
    StreamEvent e;
    e.text = std::string(text);
    e.is_reasoning = reasoning;
    on_event_(e);
  }
}

void AnswerStream::handle_events() {
  for (const auto& e : events_) {
    if (e.kind == text::ParseEvent::Kind::Reasoning) {
      emit(e.text, true);
    } else if (e.kind == text::ParseEvent::Kind::Text && !stop_hit_) {
      const std::string safe = stops_.push(e.text, &stop_hit_);
      answer_ += safe;
      emit(safe, false);
    }
  }
  events_.clear();
}

bool AnswerStream::push(int32_t token) {
  const std::string piece = detok_.push(token);
  raw_ += piece;
  parser_.feed(piece, events_);
  handle_events();
  return stop_hit_;
}

void AnswerStream::finish(int32_t stop_token, int turn, ChatResult& r) {
  if (stop_token >= 0 && stop_token != text::gemma4::kEos) raw_ += tok_.piece(stop_token);
  const std::string tail = detok_.flush();
  raw_ += tail;
  parser_.feed(tail, events_);
  parser_.finish(events_);
  handle_events();
  if (!stop_hit_) {
    const std::string rest = stops_.flush();
    answer_ += rest;
    emit(rest, false);
  }
  r.raw_text = raw_;
  r.text = stop_hit_ ? answer_ : parser_.content();
  if (parser_.has_reasoning()) r.thinking = parser_.reasoning();
  int idx = 0;
  for (const auto& c : parser_.tool_calls()) {
    ToolCall tc;
    tc.id = "call_" + std::to_string(turn) + "_" + std::to_string(idx++);
    tc.name = c.name;
    tc.arguments_json = c.arguments.dump();
    tc.status = text::to_string(c.status);
    r.tool_calls.push_back(tc);
  }
}

}  // namespace mlxq::engine
