// The mlxq binary as a user meets it: make-model, logits (.npy and text, chunk/decode), inspect,
// and one-line errors with a non-zero exit for corrupt inputs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <functional>
#include <nlohmann/json.hpp>

#include "convert/imatrix.h"
#include "io/npy.h"
#include "kernels/matmul.h"
#include "test_util.h"

namespace mlxq {
namespace {

namespace fs = std::filesystem;

using Result = test::CommandResult;

Result run(const std::string& args, const std::string& /*tmp*/) { return test::run_command(std::string(MLXQ_BIN) + " " + args); }

// Rewrites a safetensors header in place (same length, space padded) through `edit`.
void edit_header(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  std::string b = test::read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(b[size_t(i)]);
  nlohmann::json h = nlohmann::json::parse(b.substr(8, n));
  edit(h);
  std::string s = h.dump();
  ASSERT_LE(s.size(), n);
  s.append(n - s.size(), ' ');
  b.replace(8, n, s);
  test::write_file(path, b);
}

TEST(Cli, LogitsModesAgreeAndMatchGolden) {
  test::TempDir d;
  const std::string m = test::data_path("gemma4-tiny-a/mlx-q");
  const std::string toks = "2,638,1932,1428,739,280,1608,819,1212,1270";
  for (const std::string mode : {"", "--chunk 3", "--decode"}) {
    Result r = run("logits --exact -m " + m + " --tokens " + toks + " " + mode + " --out " + d / "o.npy", d.str());
    ASSERT_EQ(r.code, 0) << r.err;
    const io::NpyF32 o = io::read_npy_f32(d / "o.npy");
    const io::NpyF32 g = io::read_npy_f32(test::data_path("gemma4-tiny-a/goldens/logits_mlx-q_S1.npy"));
    ASSERT_EQ(o.shape, (std::vector<int64_t>{10, 2048}));
    for (size_t i = 0; i < o.data.size(); ++i) ASSERT_NEAR(o.data[i], g.data[i], 2e-4) << mode;
  }
  Result t = run("logits -m " + m + " --tokens 2,638 --top 3", d.str());
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_EQ(std::count(t.out.begin(), t.out.end(), '\n'), 2);
  EXPECT_EQ(t.out.rfind("pos 0 token 2:", 0), 0u) << t.out;
}

TEST(Cli, MakeModelThenInspect) {
  test::TempDir d;
  Result r = run("make-model -q -o " + d / "m" + " --preset tiny --format mlx --q-bits 4 --seed 3", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  r = run("inspect -m " + d / "m", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("MLX layout"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("affine, default 4 bits / group 64"), std::string::npos);
  EXPECT_NE(r.out.find("language_model.model.embed_tokens.weight"), std::string::npos);
  EXPECT_NE(r.out.find("4-bit g64"), std::string::npos);
  EXPECT_NE(r.out.find("per token"), std::string::npos);
  // An existing output is refused without --force.
  r = run("make-model -q -o " + d / "m", d.str());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  r = run("make-model -q -o " + d / "m" + " --force --seed 4", d.str());
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Cli, RepackThenBenchAndInspectUseIt) {
  test::TempDir d;
  Result r = run("make-model -q -o " + d / "m" + " --preset tiny --format mlx --q-bits 3 --seed 5", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  r = run("repack -m " + d / "m" + " -t 2", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string file = d / "m/mlxq-interleaved.bin";
  EXPECT_NE(r.out.find(file + ": "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tensors interleaved"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::exists(file));
  const bool avx512 = kernels::il16_kernel_active();
  r = run("bench -m " + d / "m" + " -p 16 -n 4 -r 1 --bandwidth-gib 0 --json", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("interleaved"), avx512 ? file : "") << r.out;
  r = run("bench -m " + d / "m" + " -p 16 -n 4 -r 1 --bandwidth-gib 0 --json --interleaved off", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("interleaved"), "");
  r = run("inspect -m " + d / "m", d.str());
  EXPECT_NE(r.out.find(avx512 ? "interleaved  " + file : "interleaved  none in use"), std::string::npos) << r.out;
  // A file that does not belong to the checkpoint: ignored when found, an error when named.
  test::write_file(file, "MLXQIL16 but nothing else");
  r = run("bench -m " + d / "m" + " -p 16 -n 4 -r 1 --bandwidth-gib 0 --json", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  if (avx512) {
    EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  }
  r = run("bench -m " + d / "m" + " -p 16 -n 4 -r 1 --bandwidth-gib 0 --interleaved " + file, d.str());
  if (avx512) {
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find(file), std::string::npos) << r.err;
  }
  r = run("repack -m " + d / "nowhere", d.str());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("nowhere"), std::string::npos) << r.err;
}

TEST(Cli, TokenizeAndTemplate) {
  test::TempDir d;
  Result r = run(std::string("tokenize --tokenizer ") + MLXQ_TOKENIZER + " 'Hello world'", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "[9259,1902]\n");
  r = run(std::string("tokenize --tokenizer ") + MLXQ_TOKENIZER + " --special '<|turn>user'", d.str());
  EXPECT_EQ(r.out, "[105,2364]\n");
  test::write_file(d / "m.json", R"([{"role":"system","content":"You are a helpful assistant. Be concise."},)"
                                 R"({"role":"user","content":"What is the capital of France?"}])");
  r = run("template --messages " + d / "m.json", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "<bos><|turn>system\nYou are a helpful assistant. Be concise.<turn|>\n<|turn>user\n"
                   "What is the capital of France?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
  r = run("template --thinking --no-generation-prompt --messages " + d / "m.json", d.str());
  EXPECT_EQ(r.out, "<bos><|turn>system\n<|think|>\nYou are a helpful assistant. Be concise.<turn|>\n<|turn>user\n"
                   "What is the capital of France?<turn|>\n");
  // Input the official template rejects (string arguments) is an error with a non-zero exit.
  test::write_file(d / "bad.json", R"([{"role":"user","content":"hi"},{"role":"assistant","tool_calls":)"
                                   R"([{"function":{"name":"f","arguments":"{\"a\":1}"}}]}])");
  r = run("template --messages " + d / "bad.json", d.str());
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("mlxq: error: ", 0), 0u) << r.err;
}

// SIGKILL at any moment of a conversion leaves nothing at the output path.
TEST(Cli, KilledConvertLeavesNoOutput) {
  test::TempDir d;
  Result r = run("make-model -q -o " + d / "in" + " --preset small --tokenizer /dev/null", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  // Time an uninterrupted run, then kill others at fractions of it.
  const auto t0 = std::chrono::steady_clock::now();
  r = run("convert -i " + d / "in" + " -o " + d / "done" + " -q --q-bits 4", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(d / "done/model.safetensors.index.json"));
  const double full_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  int killed = 0;
  for (double frac : {0.05, 0.2, 0.4, 0.6, 0.8}) {
    const int ms = int(frac * full_ms);
    const std::string out = d / ("out" + std::to_string(ms));
    const pid_t pid = fork();
    if (pid == 0) {
      execl(MLXQ_BIN, "mlxq", "convert", "-i", (d / "in").c_str(), "-o", out.c_str(), "-q", "--q-bits", "4",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    usleep(useconds_t(ms) * 1000);
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) {
      ++killed;
      EXPECT_FALSE(fs::exists(out)) << "killed after " << ms << " ms";
    } else {  // it finished first: then the output is complete
      EXPECT_TRUE(fs::exists(out + "/model.safetensors.index.json"));
    }
  }
  EXPECT_GE(killed, 3);
}

// `mlxq imatrix` computes llama.cpp-format importances with the engine; convert reads them back.
TEST(Cli, ImatrixThenConvertWithAwq) {
  test::TempDir d;
  Result r = run("make-model -q -o " + d / "m" + " --preset small --seed 2 --tokenizer " + MLXQ_TOKENIZER, d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  std::string text;
  for (int i = 0; i < 300; ++i) text += "The quick brown fox jumps over the lazy dog number " + std::to_string(i) + ". ";
  test::write_file(d / "calib.txt", text);
  r = run("imatrix -m " + d / "m" + " --text " + d / "calib.txt" + " -o " + d / "im.gguf" + " -c 128 --chunks 3", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  const quant::Imatrix m = quant::read_imatrix(d / "im.gguf");
  EXPECT_EQ(m.chunk_count, 3u);
  EXPECT_EQ(m.chunk_size, 128u);
  ASSERT_TRUE(m.entries.count("blk.0.attn_q.weight"));
  EXPECT_EQ(m.entries.at("blk.0.attn_q.weight").counts[0], 3.0f * 128);  // every token of every chunk
  EXPECT_FALSE(m.entries.count("blk.5.attn_v.weight"));                    // the full layer has no v_proj
  ASSERT_TRUE(m.entries.count("blk.2.ffn_gate_up_exps.weight"));
  const auto& ex = m.entries.at("blk.2.ffn_gate_up_exps.weight");
  EXPECT_EQ(ex.in_sum2.size(), 16u);  // one matrix per expert
  float routed = 0;
  for (float c : ex.counts) routed += c;
  EXPECT_EQ(routed, 3.0f * 128 * 4);  // top-4 routing: four expert rows per token
  r = run("convert -i " + d / "m" + " -o " + d / "q" + " -q --q-recipe unsloth --imatrix-path " + d / "im.gguf" +
              " --awq-report", d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("AWQ pre-scaling complete: modified"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("input_layernorm"), std::string::npos) << r.out;
}

// quant-error: more bits, less error, per tensor and in next-token distributions.
TEST(Cli, QuantErrorRanksBitWidths) {
  test::TempDir d;
  Result r = run("make-model -q -o " + d / "ref" + " --preset small --seed 4 --tokenizer " + MLXQ_TOKENIZER, d.str());
  ASSERT_EQ(r.code, 0) << r.err;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "Paris is the capital of France and Berlin of Germany, item " + std::to_string(i) + ". ";
  test::write_file(d / "t.txt", text);
  auto measure = [&](int bits, double* mean_err, double* kl) {
    const std::string out = d / ("q" + std::to_string(bits));
    Result c = run("convert -i " + d / "ref" + " -o " + out + " -q --q-bits " + std::to_string(bits), d.str());
    ASSERT_EQ(c.code, 0) << c.err;
    Result q = run("quant-error --ref " + d / "ref" + " -m " + out + " --text " + d / "t.txt" + " -c 64 --chunks 2 --top 3",
                   d.str());
    ASSERT_EQ(q.code, 0) << q.err;
    ASSERT_EQ(std::sscanf(q.out.c_str(), "%*d quantized tensors compared; mean unweighted relative error %lf", mean_err), 1)
        << q.out;
    const size_t at = q.out.find("KL(ref || quant) over ");
    ASSERT_NE(at, std::string::npos) << q.out;
    ASSERT_EQ(std::sscanf(q.out.c_str() + at, "KL(ref || quant) over %*d positions: mean %lf", kl), 1) << q.out;
  };
  double e4 = 0, k4 = 0, e8 = 0, k8 = 0;
  measure(4, &e4, &k4);
  measure(8, &e8, &k8);
  EXPECT_GT(e4, 0);
  EXPECT_LT(e8, e4 / 10);  // 4 more bits: 16x smaller steps, 256x smaller squared error
  EXPECT_LT(k8, k4);
  EXPECT_GT(k4, 0);
}

TEST(Cli, CorruptInputsGiveOneLineErrors) {
  test::TempDir d;
  const std::string src = test::data_path("gemma4-tiny-a/hf");
  auto fresh = [&](const std::string& name) {
    const std::string dir = d / name;
    fs::create_directories(dir);
    fs::copy_file(src + "/config.json", dir + "/config.json");
    fs::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
    fs::permissions(dir + "/model.safetensors", fs::perms::owner_write, fs::perm_options::add);
    fs::permissions(dir + "/config.json", fs::perms::owner_write, fs::perm_options::add);
    return dir;
  };
  struct Case { std::string name, expect; };
  std::vector<Case> cases;
  {  // truncated shard
    const std::string dir = fresh("trunc");
    fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") - 1000);
    cases.push_back({"trunc", "out of range of the data section"});
  }
  {  // header length past the end
    const std::string dir = fresh("hlen");
    std::string b = test::read_file(dir + "/model.safetensors");
    b[4] = char(0x10);
    test::write_file(dir + "/model.safetensors", b);
    cases.push_back({"hlen", "header length"});
  }
  {  // config field of the wrong type
    const std::string dir = fresh("cfg");
    std::string c = test::read_file(dir + "/config.json");
    c.replace(c.find("\"sliding_window\": 32"), 20, "\"sliding_window\": \"32\"");
    test::write_file(dir + "/config.json", c);
    cases.push_back({"cfg", "text_config.sliding_window must be an integer"});
  }
  {  // index naming a missing shard
    const std::string dir = fresh("idx");
    test::write_file(dir + "/model.safetensors.index.json",
                     R"({"weight_map": {"x": "model-00002-of-00002.safetensors"}})");
    cases.push_back({"idx", "which does not exist"});
  }
  const std::string norm = "model.language_model.norm.weight";
  {  // two tensors overlapping in the data section
    const std::string dir = fresh("overlap");
    edit_header(dir + "/model.safetensors", [&](nlohmann::json& h) {
      auto& o = h[norm]["data_offsets"];
      o = {o[0].get<uint64_t>() - 2, o[1].get<uint64_t>() - 2};
    });
    cases.push_back({"overlap", "overlap in the data section"});
  }
  {  // offsets out of range
    const std::string dir = fresh("range");
    edit_header(dir + "/model.safetensors", [&](nlohmann::json& h) {
      h[norm]["data_offsets"][1] = uint64_t(1) << 40;
    });
    cases.push_back({"range", "'" + norm + "': data_offsets"});
  }
  {  // dtype/shape byte-count mismatch
    const std::string dir = fresh("bytes");
    edit_header(dir + "/model.safetensors", [&](nlohmann::json& h) { h[norm]["shape"] = {255}; });
    cases.push_back({"bytes", "512 bytes for dtype BF16 and shape [255], expected 510"});
  }
  {  // a tensor the config implies is missing
    const std::string dir = fresh("missing");
    edit_header(dir + "/model.safetensors",
                [&](nlohmann::json& h) { h.erase("model.language_model.layers.2.mlp.up_proj.weight"); });
    cases.push_back({"missing", "missing tensor 'model.language_model.layers.2.mlp.up_proj.weight'"});
  }
  {  // broken JSON config
    const std::string dir = fresh("json");
    test::write_file(dir + "/config.json", "{\"model_type\": ");
    cases.push_back({"json", "not valid JSON"});
  }
  for (const Case& c : cases) {
    Result r = run("logits -m " + d / c.name + " --tokens 2,3", d.str());
    EXPECT_EQ(r.code, 1) << c.name;
    EXPECT_EQ(r.err.rfind("mlxq: error: ", 0), 0u) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.name << ": " << r.err;
  }
  Result r = run("logits -m " + src + " --tokens 2,x", d.str());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("'x' is not a non-negative token id"), std::string::npos) << r.err;
  r = run("logits -m " + src + " --tokens 2,99999", d.str());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("outside the vocabulary"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mlxq
