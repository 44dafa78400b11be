// `mlxq eval`: quality of a checkpoint on a chat file (the corpus format of
// train/tiny/make_corpus.py):
//  - perplexity of the reference answers (every model-generated token of the rendered
//    conversation, teacher-forced, as a session holds it: src/engine/transcript.h);
//  - with --ref, the mean KL(ref || model) of the next-token distributions at those positions;
//  - answer accuracy: each conversation replayed through a Session (greedy), every answer checked
//    against the reference message: "exact" (same text, or the same tool call) and "key" (the
//    fact the conversation's `expect` names appears: the capital, the number, `tool:city`);
//  - the checkpoint's size on disk and the weight bytes one decoded token reads.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>

#include "core/error.h"
#include "engine/transcript.h"
#include "io/safetensors.h"
#include "mlxq/commands.h"
#include "mlxq/divergence.h"
#include "mlxq/session.h"
#include "model/gemma4/model.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace mlxq::cli {

namespace {

struct Scores {
  double nll = 0, kl = 0;
  int64_t tokens = 0, answers = 0, exact = 0, key = 0;
};

// log-softmax value of `target` in a logit row.
double log_prob(const float* row, int64_t n, int32_t target) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, row[i]);
  double z = 0;
  for (int64_t i = 0; i < n; ++i) z += std::exp(double(row[i] - m));
  return double(row[target] - m) - std::log(z);
}

// Logits at the positions whose next token the model generated (want[i]), [count, vocab];
// the other positions are prefilled without the lm_head.
std::vector<float> answer_logits(model::gemma4::Model& model, const std::vector<int32_t>& tokens,
                                 const std::vector<uint8_t>& want) {
  const int64_t V = model.config().vocab_size, T = int64_t(tokens.size());
  int64_t count = 0;
  for (int64_t i = 0; i < T; ++i) count += want[size_t(i)];
  std::vector<float> logits(size_t(count) * size_t(V));
  auto cache = model.make_cache(T);
  int64_t i = 0, row = 0;
  while (i < T) {
    int64_t j = i;
    while (j < T && want[size_t(j)] == want[size_t(i)]) ++j;
    const std::span<const int32_t> run(tokens.data() + i, size_t(j - i));
    model.forward(run, cache, want[size_t(i)] ? logits.data() + row * V : nullptr, true);
    if (want[size_t(i)]) row += j - i;
    i = j;
  }
  return logits;
}

void score_tokens(model::gemma4::Model& model, model::gemma4::Model* ref, const engine::Transcript& t, Scores& s) {
  const int64_t V = model.config().vocab_size;
  std::vector<uint8_t> want(t.tokens.size(), 0);  // position i predicts a generated token i + 1
  for (size_t i = 1; i < t.tokens.size(); ++i) want[i - 1] = t.generated[i];
  const std::vector<float> lq = answer_logits(model, t.tokens, want);
  std::vector<float> lp;
  if (ref) lp = answer_logits(*ref, t.tokens, want);
  int64_t row = 0;
  for (size_t i = 0; i + 1 < t.tokens.size(); ++i) {
    if (!want[i]) continue;
    const float* q = lq.data() + row * V;
    s.nll -= log_prob(q, V, t.tokens[i + 1]);
    if (ref) {
      bool same = false;
      int64_t top = 0;
      double h = 0;
      s.kl += kl(lp.data() + row * V, q, V, &same, &top, &h);
    }
    ++row;
    ++s.tokens;
  }
}

bool same_call(const ToolCall& got, const ordered_json& want) {
  if (got.name != want["function"].value("name", "")) return false;
  const auto args = ordered_json::parse(got.arguments_json, nullptr, false);
  return !args.is_discarded() && nlohmann::json(args) == nlohmann::json(want["function"]["arguments"]);
}

// Replays the conversation's user turns and tool results through the session; scores each answer.
void score_answers(Session& s, const ordered_json& conv, Scores& sc) {
  s.reset();
  s.set_system(conv.contains("system") && conv["system"].is_string() ? conv["system"].get<std::string>() : "");
  ChatConfig cfg;
  cfg.temperature = 0.0f;
  cfg.max_new_tokens = 96;
  cfg.reasoning_effort = conv.value("thinking", false) ? "high" : "low";
  if (conv.contains("tools") && conv["tools"].is_array()) cfg.tools_json = conv["tools"].dump();
  const ordered_json& msgs = conv["messages"];
  const ordered_json expect = conv.contains("expect") ? conv["expect"] : ordered_json::array();
  ChatResult last;
  size_t answer_no = 0;
  bool derailed = false;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ordered_json& m = msgs[i];
    const std::string role = m.value("role", "");
    if (role == "user") {
      if (!derailed) last = s.send(m.value("content", ""), cfg);
      continue;
    }
    if (role == "tool") {
      if (!derailed) last = s.send_tool_result(last.tool_calls.at(0).id, m.value("content", ""), cfg);
      continue;
    }
    // An assistant message: what the last send produced must match it.
    ++sc.answers;
    const std::string key = answer_no < expect.size() ? expect[answer_no].get<std::string>() : "";
    ++answer_no;
    if (derailed) continue;
    const bool want_call = m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty();
    if (want_call) {
      const bool called = last.finish_reason == FinishReason::ToolCalls && last.tool_calls.size() == 1 &&
                          last.tool_calls[0].status == "ok";
      if (called && same_call(last.tool_calls[0], m["tool_calls"][0])) ++sc.exact, ++sc.key;
      if (!called) derailed = true;  // no call to answer: the rest of the conversation cannot follow
      continue;
    }
    if (last.finish_reason == FinishReason::ToolCalls) derailed = true;
    if (last.text == m.value("content", "")) ++sc.exact;
    if (!key.empty() && last.text.find(key) != std::string::npos) ++sc.key;
  }
}

uint64_t checkpoint_bytes(const std::string& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") n += uint64_t(e.file_size());
  return n;
}

}  // namespace

void register_eval(CLI::App& app) {
  struct Args {
    std::string model, ref, chats;
    int threads = 0, max = 0;
    bool exact = false, json = false, no_answers = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("eval", "Perplexity, KL against a reference and answer accuracy on a chat file");
  cmd->add_option("-m,--model", a->model, "Checkpoint directory (default: the embedded default model)");
  cmd->add_option("--chats", a->chats, "Conversations, one JSON object a line (train/tiny/make_corpus.py format)")
      ->required();
  cmd->add_option("--ref", a->ref, "Reference checkpoint (e.g. the BF16 one) for the mean KL divergence");
  cmd->add_option("--max", a->max, "Use at most this many conversations (0: all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)");
  cmd->add_flag("--exact", a->exact, "Exact precision (f32 activations) in both models");
  cmd->add_flag("--no-answers", a->no_answers, "Skip the answer replay (perplexity and KL only)");
  cmd->add_flag("--json", a->json, "Print one JSON object");
  cmd->callback([a] {
    const std::string path = a->model.empty() ? default_model_path() : a->model;
    model::gemma4::ModelOptions mo;
    mo.threads = a->threads;
    mo.exact = a->exact;
    model::gemma4::Model model(path, mo);
    std::unique_ptr<model::gemma4::Model> ref;
    if (!a->ref.empty()) {
      ref = std::make_unique<model::gemma4::Model>(a->ref, mo);
      check(ref->config().vocab_size == model.config().vocab_size, a->ref + ": vocabulary size differs from the model's");
    }
    const text::Tokenizer tok = text::Tokenizer::from_file(tokenizer_path(path, ""));
    std::unique_ptr<Session> session;
    if (!a->no_answers) {
      LoadOptions lo;
      lo.threads = a->threads;
      lo.exact = a->exact;
      session = load_session(path, lo);
    }
    std::ifstream in(a->chats);
    check(bool(in), a->chats + ": cannot open");
    Scores sc;
    int64_t convs = 0;
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.empty()) continue;
      if (a->max > 0 && convs >= a->max) break;
      const auto conv = ordered_json::parse(line, nullptr, false);
      const std::string where = a->chats + ":" + std::to_string(n);
      check(!conv.is_discarded(), where + ": not valid JSON");
      try {
        score_tokens(model, ref.get(), engine::render_transcript(tok, conv), sc);
        if (session) score_answers(*session, conv, sc);
      } catch (const Error& e) {
        throw Error(where + ": " + e.what());
      }
      ++convs;
    }
    check(sc.tokens > 0, a->chats + ": no conversations with answers");
    const double ppl = std::exp(sc.nll / double(sc.tokens));
    ordered_json j;
    j["model"] = path;
    j["conversations"] = convs;
    j["tokens"] = sc.tokens;
    j["perplexity"] = ppl;
    if (ref) j["kl_mean"] = sc.kl / double(sc.tokens);
    if (session) {
      j["answers"] = sc.answers;
      j["exact"] = double(sc.exact) / double(std::max<int64_t>(1, sc.answers));
      j["key"] = double(sc.key) / double(std::max<int64_t>(1, sc.answers));
    }
    j["file_bytes"] = checkpoint_bytes(path);
    j["bytes_per_token"] = model.bytes_per_token();
    if (a->json) {
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    std::printf("%s: %lld conversations, %lld answer tokens\n", path.c_str(), (long long)convs, (long long)sc.tokens);
    std::printf("  perplexity      %.4f\n", ppl);
    if (ref) std::printf("  mean KL vs ref  %.6f\n", sc.kl / double(sc.tokens));
    if (session)
      std::printf("  answers         %lld: exact %.1f%%, key fact %.1f%%\n", (long long)sc.answers,
                  100.0 * double(sc.exact) / double(std::max<int64_t>(1, sc.answers)),
                  100.0 * double(sc.key) / double(std::max<int64_t>(1, sc.answers)));
    std::printf("  file            %.2f MB, %.2f MB read per token\n", double(checkpoint_bytes(path)) / 1e6,
                double(model.bytes_per_token()) / 1e6);
  });
}

}  // namespace mlxq::cli
