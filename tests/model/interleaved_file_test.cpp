// The interleaved weights file: written from a synthetic MLX checkpoint, it holds every code,
// scale and bias of each matrix it covers (against the checkpoint's own bytes), a model that maps
// it computes the logits of one that does not, and a stale, truncated or foreign file is refused
// with a message naming the file and what disagrees (or, when found automatically, ignored).
#include "model/gemma4/interleaved_file.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "convert/synthetic.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "kernels/interleaved.h"
#include "kernels/matmul.h"
#include "model/gemma4/config.h"
#include "model/gemma4/model.h"
#include "test_util.h"

namespace mlxq::model::gemma4 {
namespace {

namespace fs = std::filesystem;

// A tiny MLX checkpoint in the card's mixed 3/4/5-bit recipe.
std::string make_checkpoint(const test::TempDir& d) {
  ThreadPool pool(2);
  SyntheticOptions o;
  o.seed = 11;
  o.format = CheckpointFormat::MLX;
  o.quant = {3, 64};
  o.recipe = "unsloth";
  write_synthetic_model(d / "m", o, pool);
  return d / "m";
}

std::string repack(const std::string& dir) {
  io::Checkpoint ck(dir);
  const Gemma4Weights w = bind_weights(ck, load_config(dir));
  ThreadPool pool(2);
  write_interleaved(ck, w, default_interleaved_path(ck), pool);
  return default_interleaved_path(ck);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<float> logits(const std::string& dir, const std::string& interleaved, std::string* used = nullptr) {
  ModelOptions mo;
  mo.threads = 2;
  mo.max_chunk = 64;
  mo.interleaved = interleaved;
  Model m(dir, mo);
  if (used) *used = m.interleaved_path();
  const std::vector<int32_t> toks = {2, 17, 300, 1999, 5, 77, 1024, 3, 3, 3, 640, 12, 9, 8, 7, 6, 5, 4, 3, 2};
  std::vector<float> out;
  for (int64_t chunk : {1, 20}) {  // decode (one token at a time) and prefill in token lanes
    auto cache = m.make_cache(int64_t(toks.size()));
    std::vector<float> y(toks.size() * size_t(m.config().vocab_size));
    m.forward(toks, cache, y.data(), true, chunk);
    out.insert(out.end(), y.begin(), y.end());
  }
  return out;
}

TEST(InterleavedFile, HoldsEveryMatrixItCoversAndGivesTheSameLogits) {
  const bool vnni = kernels::il16_kernel_active();  // only the AVX-512 int8 kernel reads the file
  test::TempDir d;
  const std::string dir = make_checkpoint(d);
  const std::string path = repack(dir);
  ASSERT_TRUE(fs::exists(path));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left " << e.path();

  io::Checkpoint ck(dir);
  Gemma4Weights w = bind_weights(ck, load_config(dir));
  const auto map = attach_interleaved(ck, w, path);
  int covered = 0;
  std::set<int> bits;
  auto check_matrix = [&](const kernels::Matrix& m) {
    if (!m.il) return;
    ++covered;
    bits.insert(m.spec.bits);
    for (int64_t r : {int64_t(0), m.rows / 2 + 1, m.rows - 1})
      for (int64_t k = 0; k < m.cols; k += 7) {
        ASSERT_EQ(kernels::il16::code_at(m.il, m.spec.bits, m.cols, r, k),
                  quant::code_at(m.data + size_t(r) * m.row_bytes, k, m.spec.bits))
            << *m.name << " r " << r << " k " << k;
        ASSERT_EQ(kernels::il16::scale_at(m.il, m.spec.bits, m.cols, r, k),
                  load_u16(m.scales + size_t(r) * m.sb_row_bytes + 2 * (k / 64)));
        ASSERT_EQ(kernels::il16::bias_at(m.il, m.spec.bits, m.cols, r, k),
                  load_u16(m.biases + size_t(r) * m.sb_row_bytes + 2 * (k / 64)));
      }
  };
  check_matrix(w.embed_tokens);
  for (const auto& L : w.layers) {
    for (const kernels::Matrix* m : {&L.q_proj, &L.k_proj, &L.v_proj, &L.mlp_gate, &L.mlp_up, &L.mlp_down}) check_matrix(*m);
    for (const kernels::ExpertStack* s : {&L.expert_gate, &L.expert_up, &L.expert_down}) {
      ASSERT_NE(s->first.il, nullptr) << *s->first.name;
      check_matrix(s->expert(0));
      check_matrix(s->expert(s->n_experts - 1));
      if (vnni) {
        EXPECT_EQ(kernels::kernel_name(s->expert(1), kernels::Precision::Fast), "il16-avx512");
      }
    }
  }
  EXPECT_GT(covered, 10);
  EXPECT_GE(bits.size(), 2u) << "the recipe mixes bit widths";

  std::string used;
  const auto with = logits(dir, "auto", &used), without = logits(dir, "off");
  EXPECT_EQ(used, vnni ? path : "");
  double maxd = 0, spread = 0;
  for (size_t i = 0; i < with.size(); ++i) {
    maxd = std::max(maxd, double(std::fabs(with[i] - without[i])));
    spread = std::max(spread, double(std::fabs(without[i])));
  }
  // With the AVX-512 kernels off (what MLXQ_CPU=avx2 does) the file is not even mapped.
  kernels::set_avx512_kernels_enabled(false);
  std::string used_off = "?";
  logits(dir, "auto", &used_off);
  kernels::set_avx512_kernels_enabled(true);
  EXPECT_EQ(used_off, "");
  // The same integer products in another summation order: float rounding only.
  EXPECT_LT(maxd, 1e-3 * spread) << "max |dlogit| " << maxd << " of " << spread;
  EXPECT_GT(spread, 1.0);
}

TEST(InterleavedFile, AStaleTruncatedOrForeignFileIsRefused) {
  const bool vnni = kernels::il16_kernel_active();  // models attach the file only then
  test::TempDir d;
  const std::string dir = make_checkpoint(d);
  const std::string path = repack(dir);
  const std::string good = test::read_file(path);
  io::Checkpoint ck(dir);
  Gemma4Weights w = bind_weights(ck, load_config(dir));
  auto attach = [&] { attach_interleaved(ck, w, path); };
  {
    Gemma4Weights ok = w;
    EXPECT_NE(attach_interleaved(ck, ok, path), nullptr);
    EXPECT_NE(ok.layers[0].expert_gate.first.il, nullptr);
  }

  test::write_file(path, good.substr(0, good.size() - 4096));
  EXPECT_NE(error_of(attach).find("outside the file"), std::string::npos) << error_of(attach);
  test::write_file(path, good.substr(0, 20));
  EXPECT_NE(error_of(attach).find("not an mlxq interleaved weights file"), std::string::npos) << error_of(attach);
  std::string bad = good;
  bad[24] = 'x';  // the JSON header's first byte
  test::write_file(path, bad);
  EXPECT_NE(error_of(attach).find("JSON"), std::string::npos) << error_of(attach);
  bad = good;
  bad[8] = 9;  // version
  test::write_file(path, bad);
  EXPECT_NE(error_of(attach).find("version 9"), std::string::npos) << error_of(attach);
  for (const kernels::ExpertStack* s : {&w.layers[0].expert_gate}) EXPECT_EQ(s->first.il, nullptr) << "left attached";

  // A checkpoint rewritten after the file (here only its modification time moves).
  test::write_file(path, good);
  const std::string shard = ck.files()[0]->path();
  struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(::utimes(shard.c_str(), tv), 0);
  EXPECT_NE(error_of(attach).find("changed since"), std::string::npos) << error_of(attach);

  // Codes changed in place with the old modification time put back: the fingerprint catches it.
  {
    ASSERT_EQ(::utimes(shard.c_str(), nullptr), 0);
    test::write_file(path, test::read_file(repack(dir)));  // a fresh file for this checkpoint
    struct stat st {};
    ASSERT_EQ(::stat(shard.c_str(), &st), 0);
    std::string bytes = test::read_file(shard);
    uint64_t hlen = 0;
    std::memcpy(&hlen, bytes.data(), 8);
    const auto header = nlohmann::json::parse(bytes.substr(8, hlen));
    const std::string name = "language_model.model.embed_tokens.weight";
    const size_t at = 8 + hlen + header.at(name).at("data_offsets")[0].get<size_t>();
    bytes[at] = char(bytes[at] ^ 0x5a);
    test::write_file(shard, bytes);
    const struct timespec ts[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, shard.c_str(), ts, 0), 0);
    io::Checkpoint ck2(dir);
    Gemma4Weights w2 = bind_weights(ck2, load_config(dir));
    const std::string err = error_of([&] { attach_interleaved(ck2, w2, path); });
    EXPECT_NE(err.find("'" + name + "' does not match"), std::string::npos) << err;
  }

  // Found automatically, a stale file is ignored with a warning; named explicitly, it is an error.
  std::string used = "?";
  const auto y = logits(dir, "auto", &used);
  EXPECT_EQ(used, "");
  if (vnni) {
    EXPECT_NE(error_of([&] { logits(dir, path); }).find(path), std::string::npos);
    EXPECT_NE(error_of([&] { logits(dir, d / "missing.bin"); }).find("missing.bin"), std::string::npos);
  }
}

TEST(InterleavedFile, WriterLeavesNothingBehindOnFailure) {
  test::TempDir d;
  const std::string dir = make_checkpoint(d);
  io::Checkpoint ck(dir);
  const Gemma4Weights w = bind_weights(ck, load_config(dir));
  ThreadPool pool(2);
  const std::string out = d / "no-such-dir/x.bin";
  EXPECT_NE(error_of([&] { write_interleaved(ck, w, out, pool); }).find("cannot create"), std::string::npos);
  EXPECT_FALSE(fs::exists(d / "no-such-dir"));
  // A checkpoint without any matrix the layout takes (bf16 HF) is refused by name.
  SyntheticOptions o;
  o.seed = 3;
  write_synthetic_model(d / "hf", o, pool);
  io::Checkpoint hf(d / "hf");
  const Gemma4Weights wh = bind_weights(hf, load_config(d / "hf"));
  EXPECT_NE(error_of([&] { write_interleaved(hf, wh, d / "hf.bin", pool); }).find("no matrix"), std::string::npos);
  EXPECT_FALSE(fs::exists(d / "hf.bin"));
}

}  // namespace
}  // namespace mlxq::model::gemma4
