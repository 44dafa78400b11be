// The trained tiny model (the embedded default, include/mlxq/default_model.h) against independent
// references: the PyTorch forward pass that trained it (golden logits), the corpus renderer
// (a session's history equals the transcript of the same conversation), and what it was trained
// to do: answer, think only when asked, call the weather tool and use its result.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "engine/model_impl.h"
#include "engine/transcript.h"
#include "io/npy.h"
#include "mlxq/default_model.h"
#include "mlxq/session.h"
#include "model/gemma4/model.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace mlxq {
namespace {

namespace fs = std::filesystem;

// The converted default model, made once per build tree (concurrent test processes wait on its lock).
const std::string& q3_path() {
  static const std::string p = [] {
    DefaultModelOptions o;
    o.cache_dir = MLXQ_TEST_CACHE;
    o.threads = 2;
    return default_model_path(o);
  }();
  return p;
}
std::string hf_path() { return (fs::path(q3_path()).parent_path() / "hf").string(); }

std::unique_ptr<Session> open(const std::string& path, const std::string& system = "") {
  LoadOptions lo;
  lo.threads = 2;
  lo.max_context = 1024;
  SessionOptions so;
  so.system = system;
  return load_session(path, lo, so);
}

ChatConfig greedy(const char* effort = "low") {
  ChatConfig c;
  c.temperature = 0.0f;
  c.max_new_tokens = 80;
  c.reasoning_effort = effort;
  return c;
}

const char* kWeatherTool = R"([{"type":"function","function":{"name":"get_weather",
  "description":"Get the current weather in a city","parameters":{"type":"object",
  "properties":{"city":{"type":"string","description":"The city name"}},"required":["city"]}}}])";

TEST(TinyChat, LogitsMatchThePyTorchForwardPass) {
  // Golden: train/tiny/train.py's float32 forward over the bf16-rounded weights, for four
  // rendered training conversations (two longer than the 128-token sliding window). Only the
  // columns of tokens seen in training are stored; every other row of the tied embedding is zero,
  // so those logits must be exactly 0.
  const auto g = nlohmann::json::parse(test::read_file(test::data_path("tiny-chat/golden.json")));
  const io::NpyF32 ref = io::read_npy_f32(test::data_path("tiny-chat/golden_logits.npy"));
  const std::vector<int64_t> cols = g["columns"];
  ASSERT_EQ(ref.shape.size(), 2u);
  ASSERT_EQ(ref.shape[1], int64_t(cols.size()));
  model::gemma4::ModelOptions mo;
  mo.threads = 2;
  mo.exact = true;
  model::gemma4::Model model(hf_path(), mo);
  const int64_t V = model.config().vocab_size;
  std::vector<char> is_col(size_t(V), 0);
  for (int64_t c : cols) is_col[size_t(c)] = 1;
  int64_t row = 0, longest = 0, nonzero = 0;
  double worst = 0;
  for (const auto& s : g["sequences"]) {
    const std::vector<int32_t> toks = s;
    longest = std::max<int64_t>(longest, int64_t(toks.size()));
    std::vector<float> logits(toks.size() * size_t(V));
    auto cache = model.make_cache(int64_t(toks.size()));
    model.forward(toks, cache, logits.data());
    for (size_t t = 0; t < toks.size(); ++t, ++row) {
      const float* got = logits.data() + t * size_t(V);
      const float* want = ref.data.data() + size_t(row) * cols.size();
      size_t want_arg = 0;
      for (size_t j = 0; j < cols.size(); ++j) {
        worst = std::max(worst, double(std::fabs(got[cols[j]] - want[j])));
        if (want[j] > want[want_arg]) want_arg = j;
      }
      int64_t got_arg = 0;
      for (int64_t v = 0; v < V; ++v) {
        if (got[v] > got[got_arg]) got_arg = v;
        if (!is_col[size_t(v)] && got[v] != 0.0f) ++nonzero;  // a token whose embedding row is zero
      }
      // The golden's argmax over the full vocabulary: its best column unless all are below 0.
      if (want[want_arg] > 0) {
        EXPECT_EQ(got_arg, cols[want_arg]) << "position " << t;
      }
    }
  }
  EXPECT_EQ(nonzero, 0);
  EXPECT_EQ(row, ref.shape[0]);
  EXPECT_GT(longest, 128) << "the golden must cover the sliding window";
  EXPECT_LE(worst, 2e-3);
  std::printf("max |delta| vs PyTorch: %.3g over %lld positions\n", worst, (long long)row);
}

TEST(TinyChat, SessionHistoryEqualsTheTrainingTranscript) {
  // The corpus renderer (what the model was trained on) and a live session must build the same
  // token stream: replay two turns, then render the conversation with the model's own answers.
  auto s = open(q3_path(), "You are a helpful assistant. Be concise.");
  const ChatResult r1 = s->send("What is the capital of France?", greedy());
  const ChatResult r2 = s->send("What about Germany?", greedy());
  ASSERT_EQ(r2.finish_reason, FinishReason::Stop);
  nlohmann::ordered_json conv = {
      {"system", "You are a helpful assistant. Be concise."}, {"thinking", false},
      {"messages", {{{"role", "user"}, {"content", "What is the capital of France?"}},
                    {{"role", "assistant"}, {"content", r1.text}},
                    {{"role", "user"}, {"content", "What about Germany?"}},
                    {{"role", "assistant"}, {"content", r2.text}}}}};
  const text::Tokenizer tok = text::Tokenizer::from_file((fs::path(q3_path()) / "tokenizer.json").string());
  const engine::Transcript t = engine::render_transcript(tok, conv);
  std::vector<int32_t> hist = s->history();
  hist.push_back(106);  // the sampled <turn|> that closes the last answer is not in the cache yet
  EXPECT_EQ(t.tokens, hist);
}

TEST(TinyChat, ThinksOnlyWhenReasoningIsOn) {
  auto s = open(q3_path());
  const ChatResult on = s->send("What is the capital of Italy?", greedy("high"));
  EXPECT_EQ(on.finish_reason, FinishReason::Stop) << on.raw_text;
  ASSERT_TRUE(on.thinking.has_value()) << on.raw_text;
  EXPECT_FALSE(on.thinking->empty());
  EXPECT_NE(on.text.find("Rome"), std::string::npos) << on.raw_text;
  s->reset();
  const ChatResult off = s->send("What is the capital of Italy?", greedy("low"));
  EXPECT_EQ(off.finish_reason, FinishReason::Stop) << off.raw_text;
  EXPECT_FALSE(off.thinking.has_value()) << off.raw_text;
  EXPECT_EQ(off.raw_text.find("<|channel>"), std::string::npos) << off.raw_text;
  EXPECT_NE(off.text.find("Rome"), std::string::npos) << off.raw_text;
}

TEST(TinyChat, CallsTheWeatherToolAndUsesItsResult) {
  for (const char* effort : {"low", "high"}) {
    auto s = open(q3_path());
    ChatConfig c = greedy(effort);
    c.tools_json = kWeatherTool;
    const ChatResult call = s->send("What's the weather in Paris?", c);
    ASSERT_EQ(call.finish_reason, FinishReason::ToolCalls) << effort << ": " << call.raw_text;
    ASSERT_EQ(call.tool_calls.size(), 1u);
    EXPECT_EQ(call.tool_calls[0].status, "ok");
    EXPECT_EQ(call.tool_calls[0].name, "get_weather");
    EXPECT_EQ(nlohmann::json::parse(call.tool_calls[0].arguments_json), nlohmann::json({{"city", "Paris"}}));
    const ChatResult ans = s->send_tool_result(call.tool_calls[0].id, "cloudy, 14 C", c);
    EXPECT_EQ(ans.finish_reason, FinishReason::Stop) << effort << ": " << ans.raw_text;
    EXPECT_NE(ans.text.find("cloudy"), std::string::npos) << effort << ": " << ans.raw_text;
    EXPECT_NE(ans.text.find("14"), std::string::npos) << effort << ": " << ans.raw_text;
  }
}

// Two sessions on one loaded model run their conversations from two threads at once; each gets
// exactly the tokens it gets running alone (greedy), and the model is shared, not copied.
TEST(TinyChat, TwoSessionsOnOneModelRunConcurrentlyAsIfAlone) {
  LoadOptions lo;
  lo.threads = 2;
  lo.max_context = 1024;
  const std::shared_ptr<Model> model = load_model(q3_path(), lo);
  const std::vector<std::vector<std::string>> convs = {
      {"What is the capital of France?", "And of Japan?", "Tell me more."},
      {"What is the capital of Canada?", "What about Peru?", "Tell me more."}};
  struct Run {
    std::vector<std::string> raw;
    std::vector<int32_t> history;
    std::chrono::steady_clock::time_point start, end;
  };
  auto run = [&](Session& s, const std::vector<std::string>& turns) {
    Run r;
    r.start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < turns.size(); ++i) {
      ChatConfig c = greedy();
      if (i + 1 == turns.size()) c.ignore_eos = true, c.max_new_tokens = 60;  // a long decode to overlap
      r.raw.push_back(s.send(turns[i], c).raw_text);
    }
    r.end = std::chrono::steady_clock::now();
    r.history = s.history();
    return r;
  };
  std::vector<Run> alone;
  for (const auto& turns : convs) alone.push_back(run(*model->create_session(), turns));

  auto s0 = model->create_session(), s1 = model->create_session();
  EXPECT_EQ(model->live_sessions(), 2);
  EXPECT_EQ(s0->model(), model);
  std::vector<Run> together(2);
  std::atomic<int> ready{0};
  auto body = [&](int i, Session* s) {
    ++ready;
    while (ready < 2) std::this_thread::yield();
    together[size_t(i)] = run(*s, convs[size_t(i)]);
  };
  std::thread t0(body, 0, s0.get()), t1(body, 1, s1.get());
  t0.join();
  t1.join();
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(together[i].raw, alone[i].raw) << "conversation " << i;
    EXPECT_EQ(together[i].history, alone[i].history) << "conversation " << i;
  }
  EXPECT_NE(together[0].raw[0].find("Paris"), std::string::npos) << together[0].raw[0];
  EXPECT_NE(together[1].raw[0].find("Ottawa"), std::string::npos) << together[1].raw[0];
  // The two ran at the same time, not one after the other: their forward passes queued for the
  // model's scheduler.
  EXPECT_LT(together[0].start, together[1].end);
  EXPECT_LT(together[1].start, together[0].end);
  EXPECT_GT(model->forward_stats().waited, 10u);
  s0.reset();
  EXPECT_EQ(model->live_sessions(), 1);
}

TEST(Transcript, FlagsTheModelsTokensAndRejectsMalformedConversations) {
  const text::Tokenizer tok = text::Tokenizer::from_file(MLXQ_TOKENIZER);
  const auto conv = nlohmann::ordered_json::parse(R"({"thinking": false, "tools": null, "messages": [
    {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})");
  const engine::Transcript t = engine::render_transcript(tok, conv);
  // <bos><|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|> | Hello ! <turn|>
  const std::vector<int32_t> answer = tok.encode("Hello!", false);
  ASSERT_EQ(t.answers.size(), 1u);
  EXPECT_EQ(t.answers[0].second, int64_t(t.tokens.size()));
  EXPECT_EQ(t.tokens.back(), 106);
  int64_t flagged = 0;
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    flagged += t.generated[i];
    EXPECT_EQ(t.generated[i] != 0, int64_t(i) >= t.answers[0].first) << i;
  }
  EXPECT_EQ(flagged, int64_t(answer.size()) + 1);
  auto bad = [&](const char* json, const char* what) {
    try {
      engine::render_transcript(tok, nlohmann::ordered_json::parse(json));
      ADD_FAILURE() << "accepted: " << json;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  bad(R"({"messages": []})", "conversation.messages");
  bad(R"({"messages": [{"role": "assistant", "content": "x"}]})", "messages[0]");
  bad(R"({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]})", "messages[1]");
  bad(R"({"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]})", "robot");
  bad(R"({"messages": [{"role": "user", "content": 3}]})", "content");
}

}  // namespace
}  // namespace mlxq
