// The embedded default model as a user meets it: `mlxq run` with no -m answers and stops,
// `mlxq bench --capitals` gets the model card's four turns right, `mlxq eval` measures it, and the
// first-use conversion follows the card's pipeline (imatrix, then 3-bit unsloth with AWQ).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace mlxq {
namespace {

namespace fs = std::filesystem;

using Result = test::CommandResult;

// Runs mlxq with the build tree's test cache as the user's cache directory.
Result mlxq(const std::string& args) {
  return test::run_command(std::string("XDG_CACHE_HOME=") + MLXQ_TEST_CACHE + " " + MLXQ_BIN + " " + args);
}

TEST(TinyChatCli, RunAnswersParisAndStops) {
  const Result r = mlxq("run -p \"What is the capital of France?\" --json -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("tiny-chat"), std::string::npos) << r.err;  // the one-line announcement
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_NE(j["text"].get<std::string>().find("Paris"), std::string::npos) << r.out;
  EXPECT_EQ(j["finish_reason"], "stop") << r.out;
  EXPECT_TRUE(j["thinking"].is_null()) << r.out;
}

// The default model's cache folder (tiny-chat-<content hash>), made first if need be.
fs::path default_dir() {
  const Result r = mlxq("run -p Hi --json -t 2 --max-tokens 1");
  EXPECT_EQ(r.code, 0) << r.err;
  for (const auto& e : fs::directory_iterator(MLXQ_TEST_CACHE "/mlxq"))
    if (e.path().filename().string().rfind("tiny-chat-", 0) == 0 && fs::exists(e.path() / "q3" / "config.json"))
      return e.path();
  return {};
}

TEST(TinyChatCli, DefaultModelIsConvertedWithTheCardsPipeline) {
  // The cache holds hf/ (BF16), imatrix.gguf and q3/ (the converted model).
  const fs::path dir = default_dir();
  ASSERT_FALSE(dir.empty());
  const fs::path q3 = dir / "q3";
  EXPECT_TRUE(fs::exists(q3.parent_path() / "imatrix.gguf"));
  EXPECT_TRUE(fs::exists(q3.parent_path() / "hf" / "model.safetensors"));
  const auto cfg = nlohmann::json::parse(test::read_file((q3 / "config.json").string()));
  ASSERT_TRUE(cfg.contains("quantization")) << cfg.dump();
  EXPECT_EQ(cfg["quantization"]["bits"], 3);
  EXPECT_EQ(cfg["quantization"]["group_size"], 64);
}

TEST(TinyChatCli, BenchCapitalsFinishesFourTurnsWithTheRightCities) {
  const Result r = mlxq("bench --capitals --json --seed 1 -t 2");
  ASSERT_TRUE(r.code == 0 || r.code == 1) << r.err;  // 1: the TTFT gate (timing noise), not the answers
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["turns"].size(), 4u);
  const char* want[] = {"Paris", "Berlin", "Tokyo", "Tokyo"};
  for (int i = 0; i < 4; ++i) {
    const auto& t = j["turns"][size_t(i)];
    EXPECT_EQ(t["finish_reason"], "stop") << t.dump();
    EXPECT_NE(t["text"].get<std::string>().find(want[i]), std::string::npos) << "turn " << i + 1 << ": " << t.dump();
  }
  EXPECT_GT(j["turns"][3]["cached_tokens"].get<int>(), 0);  // the card's KV reuse across turns
}

TEST(TinyChatCli, ExampleProgramAnswersWithTheDefaultModel) {
  const std::string example = (fs::path(MLXQ_BIN).parent_path() / "examples" / "chat_session").string();
  const Result r = test::run_command(std::string("XDG_CACHE_HOME=") + MLXQ_TEST_CACHE + " " + example +
                                     " - 'What is the capital of Spain?'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Madrid"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[stop |"), std::string::npos) << r.out;
}

TEST(TinyChatCli, EvalMeasuresTheDefaultModelOnHeldOutChats) {
  // 40 held-out conversations (phrasings and system prompts never trained on).
  const Result r = mlxq("eval --chats " + test::data_path("tiny-chat/heldout-sample.jsonl") + " --json -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["conversations"], 40);
  EXPECT_LT(j["perplexity"].get<double>(), MLXQ_TINY_MAX_PPL) << r.out;
  EXPECT_GE(j["key"].get<double>(), MLXQ_TINY_MIN_KEY) << r.out;
  EXPECT_GT(j["file_bytes"].get<double>(), 0);
}

TEST(TinyChatCli, EvalKlAgainstItselfIsZeroAndAgainstBf16IsSmall) {
  const fs::path dir = default_dir();
  ASSERT_FALSE(dir.empty());
  const std::string hf = (dir / "hf").string(), q3 = (dir / "q3").string();
  const std::string chats = test::data_path("tiny-chat/heldout-sample.jsonl");
  const Result self = mlxq("eval -m " + hf + " --ref " + hf + " --chats " + chats + " --max 8 --no-answers --json -t 2");
  ASSERT_EQ(self.code, 0) << self.err;
  EXPECT_LT(std::fabs(nlohmann::json::parse(self.out)["kl_mean"].get<double>()), 1e-9) << self.out;
  const Result q = mlxq("eval -m " + q3 + " --ref " + hf + " --chats " + chats + " --max 8 --no-answers --json -t 2");
  ASSERT_EQ(q.code, 0) << q.err;
  const double kl = nlohmann::json::parse(q.out)["kl_mean"];
  EXPECT_GT(kl, 0.0) << q.out;  // 3-bit weights are not the BF16 ones
  EXPECT_LT(kl, MLXQ_TINY_MAX_KL_Q3) << q.out;
}

}  // namespace
}  // namespace mlxq
