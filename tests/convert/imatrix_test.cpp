// imatrix files (mlx-quant-format.md §5): GGUF write/read round trip and byte layout, a
// hand-built llama.cpp-style GGUF with every KV type, legacy .dat, corrupt and truncated input
// (always mlxq::Error, never a crash), Gemma-4 canonical names and per-matrix importances.
#include "convert/imatrix.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "core/error.h"
#include "test_util.h"

namespace mlxq::quant {
namespace {

// Little-endian byte builder for hand-made files.
struct Bytes {
  std::string b;
  Bytes& raw(const void* p, size_t n) { b.append(static_cast<const char*>(p), n); return *this; }
  Bytes& u8(uint8_t v) { return raw(&v, 1); }
  Bytes& u32(uint32_t v) { return raw(&v, 4); }
  Bytes& i32(int32_t v) { return raw(&v, 4); }
  Bytes& u64(uint64_t v) { return raw(&v, 8); }
  Bytes& f32(float v) { return raw(&v, 4); }
  Bytes& str(const std::string& s) { u64(s.size()); return raw(s.data(), s.size()); }
  Bytes& pad(size_t a) { b.resize((b.size() + a - 1) / a * a, '\0'); return *this; }
};

// A GGUF file assembled from raw KVs and F32 (or other) tensors, for reader tests.
struct GgufBuilder {
  struct T { std::string name; std::vector<uint64_t> dims; uint32_t type; std::vector<float> data; };
  std::vector<std::string> kvs;  // each: key string + type + value, already encoded
  std::vector<T> tensors;
  uint64_t alignment = 32;

  void kv(const std::string& key, uint32_t type, const Bytes& value) {
    Bytes k;
    k.str(key).u32(type);
    kvs.push_back(k.b + value.b);
  }
  void tensor(const std::string& name, std::vector<uint64_t> dims, std::vector<float> data,
              uint32_t type = 0) {
    tensors.push_back({name, std::move(dims), type, std::move(data)});
  }
  std::string build() const {
    Bytes h;
    h.raw("GGUF", 4).u32(3).u64(tensors.size()).u64(kvs.size());
    for (const auto& k : kvs) h.raw(k.data(), k.size());
    uint64_t off = 0;
    for (const auto& t : tensors) {
      h.str(t.name).u32(uint32_t(t.dims.size()));
      for (uint64_t d : t.dims) h.u64(d);
      h.u32(t.type).u64(off);
      off += (t.data.size() * 4 + alignment - 1) / alignment * alignment;
    }
    h.pad(size_t(alignment));
    for (const auto& t : tensors) {
      for (float v : t.data) h.f32(v);
      h.pad(size_t(alignment));
    }
    return h.b;
  }
};

Imatrix sample_imatrix() {
  Imatrix m;
  m.datasets = {"calibration_v3.txt", "wiki.train.raw"};
  m.chunk_count = 17;
  m.chunk_size = 512;
  auto& q = m.entries["blk.0.attn_q.weight"];
  q.n_in = 8;
  q.in_sum2 = {{1, 2, 3, 4, 5, 6, 7, 8.5f}};
  q.counts = {10};
  auto& d = m.entries["blk.0.ffn_down.weight"];
  d.n_in = 12;  // 48 bytes: not a multiple of the alignment, so padding is exercised
  d.in_sum2 = {std::vector<float>(12, 0.25f)};
  d.in_sum2[0][11] = 1e30f;
  d.counts = {5};
  auto& e = m.entries["blk.1.ffn_gate_up_exps.weight"];
  e.n_in = 5;
  e.in_sum2 = {{4, 8, 12, 16, 20}, {9, 9, 9, 9, 9}, {7, 14, 21, 28, 35}};
  e.counts = {4, 0, 7};  // expert 1 never routed
  return m;
}

void expect_same(const Imatrix& a, const Imatrix& b) {
  EXPECT_EQ(a.datasets, b.datasets);
  EXPECT_EQ(a.chunk_count, b.chunk_count);
  EXPECT_EQ(a.chunk_size, b.chunk_size);
  ASSERT_EQ(a.entries.size(), b.entries.size());
  for (const auto& [name, e] : a.entries) {
    ASSERT_TRUE(b.entries.count(name)) << name;
    const ImatrixEntry& f = b.entries.at(name);
    EXPECT_EQ(e.n_in, f.n_in) << name;
    EXPECT_EQ(e.in_sum2, f.in_sum2) << name;
    EXPECT_EQ(e.counts, f.counts) << name;
  }
}

// Reading must either succeed or throw mlxq::Error; anything else (another exception, a crash
// under the sanitizers) fails the test. Returns true when it threw.
bool throws_mlxq_error(const std::string& path) {
  try {
    read_imatrix(path);
    return false;
  } catch (const Error&) {
    return true;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-mlxq exception: " << e.what();
    return true;
  }
}

std::string error_of(const std::string& path) {
  try {
    read_imatrix(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Imatrix, GgufRoundTrip) {
  test::TempDir dir;
  const Imatrix m = sample_imatrix();
  write_imatrix_gguf(dir / "a.gguf", m);
  const Imatrix r = read_imatrix(dir / "a.gguf");
  expect_same(m, r);
  // Writing what was read gives the same bytes; no temporary file is left behind.
  write_imatrix_gguf(dir / "b.gguf", r);
  EXPECT_EQ(test::read_file(dir / "a.gguf"), test::read_file(dir / "b.gguf"));
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.str())) files += f.is_regular_file();
  EXPECT_EQ(files, 2);
}

TEST(Imatrix, GgufByteLayout) {
  test::TempDir dir;
  write_imatrix_gguf(dir / "a.gguf", sample_imatrix());
  const std::string s = test::read_file(dir / "a.gguf");
  // Hand-computed prefix: magic, version 3, 6 tensors (in_sum2 + counts per entry), 4 KVs, then
  // the first KV: general.type = "imatrix".
  Bytes want;
  want.raw("GGUF", 4).u32(3).u64(6).u64(4).str("general.type").u32(8).str("imatrix");
  want.str("imatrix.datasets").u32(9).u32(8).u64(2).str("calibration_v3.txt").str("wiki.train.raw");
  want.str("imatrix.chunk_count").u32(4).u32(17).str("imatrix.chunk_size").u32(4).u32(512);
  ASSERT_GE(s.size(), want.b.size());
  EXPECT_EQ(s.substr(0, want.b.size()), want.b);

  // Walk the tensor infos independently of the reader.
  size_t pos = want.b.size();
  auto u32 = [&] { uint32_t v; std::memcpy(&v, s.data() + pos, 4); pos += 4; return v; };
  auto u64 = [&] { uint64_t v; std::memcpy(&v, s.data() + pos, 8); pos += 8; return v; };
  auto str = [&] { uint64_t n = u64(); std::string r = s.substr(pos, n); pos += n; return r; };
  struct Info { std::string name; std::vector<uint64_t> dims; uint64_t offset; };
  std::vector<Info> infos;
  for (int i = 0; i < 6; ++i) {
    Info in;
    in.name = str();
    const uint32_t nd = u32();
    for (uint32_t d = 0; d < nd; ++d) in.dims.push_back(u64());
    EXPECT_EQ(u32(), 0u) << in.name << ": type F32";
    in.offset = u64();
    infos.push_back(in);
  }
  const size_t data_start = (pos + 31) / 32 * 32;
  // llama.cpp order: entries by name, in_sum2 then counts; ggml drops trailing dims of 1.
  const std::vector<std::pair<std::string, std::vector<uint64_t>>> expect = {
      {"blk.0.attn_q.weight.in_sum2", {8}}, {"blk.0.attn_q.weight.counts", {1}},
      {"blk.0.ffn_down.weight.in_sum2", {12}}, {"blk.0.ffn_down.weight.counts", {1}},
      {"blk.1.ffn_gate_up_exps.weight.in_sum2", {5, 3}}, {"blk.1.ffn_gate_up_exps.weight.counts", {1, 3}}};
  uint64_t prev_end = 0;
  for (size_t i = 0; i < infos.size(); ++i) {
    EXPECT_EQ(infos[i].name, expect[i].first);
    EXPECT_EQ(infos[i].dims, expect[i].second) << infos[i].name;
    EXPECT_EQ(infos[i].offset % 32, 0u) << infos[i].name;
    EXPECT_EQ((data_start + infos[i].offset) % 32, 0u) << infos[i].name;
    EXPECT_EQ(infos[i].offset, (prev_end + 31) / 32 * 32) << infos[i].name << ": packed, padded";
    uint64_t n = 1;
    for (uint64_t d : infos[i].dims) n *= d;
    prev_end = infos[i].offset + 4 * n;
  }
  EXPECT_EQ(s.size(), data_start + (prev_end + 31) / 32 * 32);
  EXPECT_EQ(s.substr(pos, data_start - pos), std::string(data_start - pos, '\0'));
  // The MoE counts tensor holds {4, 0, 7}; its in_sum2 is expert-major.
  float c[3], x[15];
  std::memcpy(c, s.data() + data_start + infos[5].offset, 12);
  std::memcpy(x, s.data() + data_start + infos[4].offset, 60);
  EXPECT_EQ(c[0], 4.0f);
  EXPECT_EQ(c[1], 0.0f);
  EXPECT_EQ(c[2], 7.0f);
  EXPECT_EQ(x[5], 9.0f);
  EXPECT_EQ(x[14], 35.0f);
}

TEST(Imatrix, ReadsLlamaCppStyleGgufWithEveryKvType) {
  test::TempDir dir;
  GgufBuilder g;
  g.alignment = 64;
  Bytes v;
  g.kv("general.type", 8, Bytes().str("imatrix"));
  g.kv("general.alignment", 4, Bytes().u32(64));
  g.kv("x.u8", 0, Bytes().u8(1));
  g.kv("x.i8", 1, Bytes().u8(0xff));
  g.kv("x.u16", 2, Bytes().raw("\1\2", 2));
  g.kv("x.i16", 3, Bytes().raw("\1\2", 2));
  g.kv("x.i32", 5, Bytes().i32(-3));
  g.kv("x.f32", 6, Bytes().f32(1.5f));
  g.kv("x.bool", 7, Bytes().u8(1));
  g.kv("x.u64", 10, Bytes().u64(7));
  g.kv("x.i64", 11, Bytes().u64(9));
  g.kv("x.f64", 12, Bytes().u64(0));
  g.kv("x.arr_u16", 9, Bytes().u32(2).u64(3).raw("\0\0\0\0\0\0", 6));
  g.kv("x.arr_arr", 9, Bytes().u32(9).u64(2).u32(8).u64(1).str("a").u32(4).u64(2).u32(1).u32(2));
  g.kv("imatrix.datasets", 9, Bytes().u32(8).u64(1).str("data.txt"));
  g.kv("imatrix.chunk_count", 4, Bytes().u32(100));
  g.kv("imatrix.chunk_size", 4, Bytes().u32(512));
  g.tensor("blk.3.ffn_down_exps.weight.counts", {1, 2}, {3, 0});
  g.tensor("blk.3.ffn_down_exps.weight.in_sum", {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  g.tensor("blk.3.ffn_down_exps.weight.in_sum2", {4, 2}, {1, 4, 9, 16, 0, 0, 0, 0});
  g.tensor("blk.3.attn_k.weight.in_sum2", {4, 1, 1, 1}, {2, 2, 2, 2});
  g.tensor("blk.3.attn_k.weight.counts", {1, 1}, {2});
  test::write_file(dir / "g.gguf", g.build());
  const Imatrix m = read_imatrix(dir / "g.gguf");
  EXPECT_EQ(m.datasets, std::vector<std::string>{"data.txt"});
  EXPECT_EQ(m.chunk_count, 100u);
  EXPECT_EQ(m.chunk_size, 512u);
  ASSERT_EQ(m.entries.size(), 2u);
  const auto& e = m.entries.at("blk.3.ffn_down_exps.weight");
  EXPECT_EQ(e.n_in, 4);
  EXPECT_EQ(e.in_sum2, (std::vector<std::vector<float>>{{1, 4, 9, 16}, {0, 0, 0, 0}}));
  EXPECT_EQ(e.counts, (std::vector<float>{3, 0}));
  EXPECT_EQ(m.entries.at("blk.3.attn_k.weight").counts, std::vector<float>{2});
}

TEST(Imatrix, LegacyDat) {
  test::TempDir dir;
  Bytes b;
  b.i32(3);
  b.i32(19).raw("blk.0.attn_q.weight", 19).i32(10).i32(4).f32(10).f32(20).f32(0).f32(40);
  b.i32(26).raw("blk.0.ffn_down_exps.weight", 26).i32(5).i32(6).f32(1).f32(2).f32(3).f32(4).f32(5).f32(6);
  b.i32(4).raw("none", 4).i32(1).i32(0);  // nothing collected: skipped
  const std::string entries = b.b;
  b.i32(42).i32(9).raw("wiki.test", 9);
  test::write_file(dir / "a.dat", b.b);
  const Imatrix m = read_imatrix(dir / "a.dat");
  ASSERT_EQ(m.entries.size(), 2u);
  const auto& q = m.entries.at("blk.0.attn_q.weight");
  EXPECT_EQ(q.n_in, 4);
  EXPECT_EQ(q.in_sum2, (std::vector<std::vector<float>>{{10, 20, 0, 40}}));
  EXPECT_EQ(q.counts, std::vector<float>{10});
  EXPECT_EQ(m.entries.at("blk.0.ffn_down_exps.weight").n_in, 6);  // n_mat stays 1 for .dat
  EXPECT_EQ(m.chunk_count, 42u);
  EXPECT_EQ(m.datasets, std::vector<std::string>{"wiki.test"});
  // in_sum2 / counts is the mean x^2 the .dat stored divided by ncall.
  const auto imp = importance_by_canonical(m);
  EXPECT_EQ(imp.at("layers.0.self_attn.q_proj").per_matrix, (std::vector<std::vector<float>>{{1, 2, 0, 4}}));
  // Older files end after the entries.
  test::write_file(dir / "b.dat", entries);
  const Imatrix old = read_imatrix(dir / "b.dat");
  EXPECT_EQ(old.entries.size(), 2u);
  EXPECT_TRUE(old.datasets.empty());
  // Trailing garbage, a negative length and a truncated trailer are errors.
  test::write_file(dir / "c.dat", b.b + "x");
  EXPECT_TRUE(throws_mlxq_error(dir / "c.dat"));
  test::write_file(dir / "d.dat", entries + Bytes().i32(1).i32(-1).b);
  EXPECT_TRUE(throws_mlxq_error(dir / "d.dat"));
  test::write_file(dir / "e.dat", entries + Bytes().i32(1).b);
  EXPECT_TRUE(throws_mlxq_error(dir / "e.dat"));
}

TEST(Imatrix, TruncatedGgufThrows) {
  test::TempDir dir;
  write_imatrix_gguf(dir / "a.gguf", sample_imatrix());
  const std::string s = test::read_file(dir / "a.gguf");
  // Every length short of the last tensor's data (the final 32 bytes hold the last counts and
  // its padding, which readers need not require).
  const size_t limit = s.size() - 32;
  for (int i = 0; i < 30; ++i) {
    const size_t len = size_t(i) * limit / 30 + (i % 3);
    test::write_file(dir / "t.gguf", s.substr(0, len));
    EXPECT_TRUE(throws_mlxq_error(dir / "t.gguf")) << "length " << len;
  }
  for (size_t len : {size_t(0), size_t(3), size_t(4), size_t(7), size_t(8), size_t(23), size_t(24), limit}) {
    test::write_file(dir / "t.gguf", s.substr(0, len));
    EXPECT_TRUE(throws_mlxq_error(dir / "t.gguf")) << "length " << len;
  }
  EXPECT_NE(error_of(dir / "t.gguf").find(dir / "t.gguf"), std::string::npos) << "names the file";
}

TEST(Imatrix, CorruptHeaderBytesNeverCrash) {
  test::TempDir dir;
  write_imatrix_gguf(dir / "a.gguf", sample_imatrix());
  const std::string s = test::read_file(dir / "a.gguf");
  const size_t header = s.find("blk.0.attn_q.weight.in_sum2") + 100;  // into the tensor infos
  int thrown = 0, tried = 0;
  for (size_t i = 0; i < header && i < s.size(); ++i) {
    for (uint8_t x : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
      std::string c = s;
      c[i] = char(uint8_t(c[i]) ^ x);
      test::write_file(dir / "c.gguf", c);
      thrown += throws_mlxq_error(dir / "c.gguf");
      ++tried;
    }
  }
  // Most flips break the structure; flips inside string contents may still parse.
  EXPECT_GT(thrown, tried / 2);
  // Random multi-byte damage anywhere, and random garbage files.
  std::mt19937 rng(7);
  for (int t = 0; t < 400; ++t) {
    std::string c = s;
    for (int k = 0; k < 4; ++k) c[rng() % c.size()] = char(rng());
    if (t % 4 == 0) c.resize(rng() % c.size());
    test::write_file(dir / "r.gguf", c);
    throws_mlxq_error(dir / "r.gguf");
    std::string junk(rng() % 200, '\0');
    for (char& ch : junk) ch = char(rng());
    if (t % 2 == 0 && junk.size() >= 4) std::memcpy(junk.data(), "GGUF", 4);
    test::write_file(dir / "j.bin", junk);
    throws_mlxq_error(dir / "j.bin");
  }
}

// Patches the u64/u32 at `pos` of a valid file and expects an error mentioning `what`.
void expect_patch_error(const test::TempDir& dir, std::string s, size_t pos, uint64_t value, int width,
                        const std::string& what) {
  std::memcpy(s.data() + pos, &value, size_t(width));
  test::write_file(dir / "p.gguf", s);
  const std::string err = error_of(dir / "p.gguf");
  EXPECT_NE(err.find(what), std::string::npos) << "got '" << err << "', expected a mention of '" << what << "'";
  EXPECT_NE(err.find(dir / "p.gguf"), std::string::npos) << err;
}

TEST(Imatrix, SpecificCorruptionsThrowNamedErrors) {
  test::TempDir dir;
  write_imatrix_gguf(dir / "a.gguf", sample_imatrix());
  const std::string s = test::read_file(dir / "a.gguf");
  expect_patch_error(dir, s, 0, 0x46554748, 4, "not a GGUF file");                // wrong magic
  expect_patch_error(dir, s, 4, 2, 4, "version 2");
  expect_patch_error(dir, s, 4, 0x03000000, 4, "big-endian");
  expect_patch_error(dir, s, 8, uint64_t(1) << 60, 8, "tensor count");             // huge counts
  expect_patch_error(dir, s, 16, uint64_t(1) << 60, 8, "metadata count");
  expect_patch_error(dir, s, 24, uint64_t(1) << 62, 8, "truncated");               // key length
  expect_patch_error(dir, s, 24 + 8 + 12, 77, 4, "general.type has value type id 77");  // KV type id
  const size_t ds = s.find("imatrix.datasets") + 16 + 4 + 4;                        // array length
  expect_patch_error(dir, s, ds, uint64_t(1) << 61, 8, "imatrix.datasets");
  const size_t t0 = s.find("blk.0.attn_q.weight.in_sum2") + 27;                     // n_dims
  expect_patch_error(dir, s, t0, 9, 4, "dimensions");
  expect_patch_error(dir, s, t0 + 4, uint64_t(1) << 40, 8, "larger than the file");
  expect_patch_error(dir, s, t0 + 12, 1, 4, "ggml type 1, expected F32");           // F16 tensor
  expect_patch_error(dir, s, t0 + 16, 8, 8, "not a multiple of the alignment");
  expect_patch_error(dir, s, t0 + 16, uint64_t(1) << 50, 8, "expected 0");
  const size_t last = s.find("blk.1.ffn_gate_up_exps.weight.counts") + 36;        // dims [1, 3]
  expect_patch_error(dir, s, last + 12, 100, 8, "runs past the end");
  const size_t c0 = s.find("blk.0.attn_q.weight.counts") + 26;
  expect_patch_error(dir, s, c0 + 4, 2, 8, "expected [1, 1]");
  expect_patch_error(dir, s, c0 + 16, 0, 8, "offset 0, expected 32");           // shares in_sum2's data
  // A non-imatrix GGUF, an unaligned alignment, a NaN sum, a lone in_sum2.
  GgufBuilder g;
  g.kv("general.type", 8, Bytes().str("model"));
  test::write_file(dir / "m.gguf", g.build());
  EXPECT_NE(error_of(dir / "m.gguf").find("not 'imatrix'"), std::string::npos);
  GgufBuilder u;
  u.kv("x.some_key", 13, Bytes().u32(0));
  test::write_file(dir / "u.gguf", u.build());
  EXPECT_NE(error_of(dir / "u.gguf").find("'x.some_key' has unknown value type id 13"), std::string::npos);
  GgufBuilder ua;
  ua.kv("x.arr", 9, Bytes().u32(200).u64(1).u32(0));
  test::write_file(dir / "ua.gguf", ua.build());
  EXPECT_NE(error_of(dir / "ua.gguf").find("array of unknown value type id 200"), std::string::npos);
  GgufBuilder a;
  a.kv("general.alignment", 4, Bytes().u32(24));
  test::write_file(dir / "al.gguf", a.build());
  EXPECT_NE(error_of(dir / "al.gguf").find("power of two"), std::string::npos);
  GgufBuilder n;
  n.tensor("x.in_sum2", {2}, {1.0f, std::nanf("")});
  n.tensor("x.counts", {1}, {1.0f});
  test::write_file(dir / "n.gguf", n.build());
  EXPECT_NE(error_of(dir / "n.gguf").find("x.in_sum2[1]"), std::string::npos);
  GgufBuilder l;
  l.tensor("x.in_sum2", {2}, {1.0f, 2.0f});
  test::write_file(dir / "l.gguf", l.build());
  EXPECT_NE(error_of(dir / "l.gguf").find("no matching x.counts"), std::string::npos);
  EXPECT_NE(error_of(dir / "missing.gguf").find("cannot open"), std::string::npos);
  // Inconsistent entries are refused by the writer.
  Imatrix bad = sample_imatrix();
  bad.entries["blk.0.attn_q.weight"].counts.push_back(1);
  EXPECT_THROW(write_imatrix_gguf(dir / "bad.gguf", bad), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.gguf"));
}

TEST(Imatrix, CanonicalKeys) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      // GGUF imatrix names
      {"blk.0.attn_q.weight", "layers.0.self_attn.q_proj"},
      {"blk.12.attn_k.weight", "layers.12.self_attn.k_proj"},
      {"blk.3.attn_v.weight", "layers.3.self_attn.v_proj"},
      {"blk.3.attn_output.weight", "layers.3.self_attn.o_proj"},
      {"blk.29.ffn_gate.weight", "layers.29.mlp.gate_proj"},
      {"blk.29.ffn_up.weight", "layers.29.mlp.up_proj"},
      {"blk.29.ffn_down.weight", "layers.29.mlp.down_proj"},
      {"blk.4.ffn_gate_inp.weight", "layers.4.router.proj"},
      {"blk.4.ffn_gate_up_exps.weight", "layers.4.experts.gate_up"},
      {"blk.4.ffn_gate_exps.weight", "layers.4.experts.gate_up"},
      {"blk.4.ffn_up_exps.weight", "layers.4.experts.gate_up"},
      {"blk.4.ffn_down_exps.weight", "layers.4.experts.down"},
      {"blk.4.attn_norm.weight", "layers.4.input_layernorm"},
      {"token_embd.weight", "embed_tokens"},
      {"output.weight", "lm_head"},
      // checkpoint names: HF, MLX, mlx-node internal, with or without .weight
      {"model.language_model.layers.0.self_attn.q_proj.weight", "layers.0.self_attn.q_proj"},
      {"language_model.model.layers.7.self_attn.o_proj.weight", "layers.7.self_attn.o_proj"},
      {"model.layers.2.mlp.down_proj.weight", "layers.2.mlp.down_proj"},
      {"model.language_model.model.layers.2.mlp.gate_proj.weight", "layers.2.mlp.gate_proj"},
      {"language_model.layers.2.mlp.up_proj", "layers.2.mlp.up_proj"},
      {"layers.1.router.proj.weight", "layers.1.router.proj"},
      {"model.language_model.layers.5.experts.gate_up_proj", "layers.5.experts.gate_up"},
      {"model.language_model.layers.5.experts.down_proj", "layers.5.experts.down"},
      {"language_model.model.layers.5.experts.switch_glu.gate_proj.weight", "layers.5.experts.gate_up"},
      {"language_model.model.layers.5.experts.switch_glu.up_proj.weight", "layers.5.experts.gate_up"},
      {"language_model.model.layers.5.experts.switch_glu.down_proj.weight", "layers.5.experts.down"},
      {"model.language_model.layers.5.input_layernorm.weight", "layers.5.input_layernorm"},
      {"model.language_model.layers.5.pre_feedforward_layernorm.weight",
       "layers.5.pre_feedforward_layernorm"},
      {"language_model.model.layers.5.pre_feedforward_layernorm_2.weight",
       "layers.5.pre_feedforward_layernorm_2"},
      {"model.language_model.embed_tokens.weight", "embed_tokens"},
      {"lm_head.weight", "lm_head"},
      // unknown
      {"blk.0.attn_q_norm.weight", ""},
      {"blk.0.ffn_gate_inp.scale", ""},
      {"blk.x.attn_q.weight", ""},
      {"blk..attn_q.weight", ""},
      {"blk.1234567.attn_q.weight", ""},
      {"model.language_model.layers.5.router.scale", ""},
      {"model.language_model.layers.5.self_attn.q_proj.scales", ""},
      {"model.language_model.layers.5.post_attention_layernorm.weight", ""},
      {"vision_tower.encoder.layers.0.self_attn.q_proj.weight", ""},
      {"layers.3", ""},
      {"", ""},
      {"output_norm.weight", ""},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(canonical_key(in), out) << in;
}

TEST(Imatrix, ImportancePerMatrix) {
  Imatrix m = sample_imatrix();
  m.entries["blk.0.unknown_thing.weight"] = {2, {{1, 1}}, {1}};
  m.entries["blk.2.attn_q.weight"] = {2, {{1, 1}}, {0}};  // never counted: absent
  const auto imp = importance_by_canonical(m);
  EXPECT_EQ(imp.size(), 3u);
  EXPECT_FALSE(imp.count("layers.2.self_attn.q_proj"));
  EXPECT_EQ(imp.at("layers.0.self_attn.q_proj").per_matrix[0][7], 0.85f);
  // Per matrix, not divided by the first count; the count-0 expert is dropped.
  const auto& e = imp.at("layers.1.experts.gate_up").per_matrix;
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], (std::vector<float>{1, 2, 3, 4, 5}));
  EXPECT_EQ(e[1], (std::vector<float>{1, 2, 3, 4, 5}));
  // ffn_gate_exps and ffn_up_exps combine matrix by matrix with the max.
  Imatrix s;
  s.entries["blk.0.ffn_gate_exps.weight"] = {2, {{4, 0}, {1, 1}, {5, 5}}, {2, 1, 0}};
  s.entries["blk.0.ffn_up_exps.weight"] = {2, {{0, 8}, {3, 0}, {5, 5}}, {2, 1, 0}};
  const auto c = importance_by_canonical(s).at("layers.0.experts.gate_up").per_matrix;
  EXPECT_EQ(c, (std::vector<std::vector<float>>{{2, 4}, {3, 1}}));
  s.entries["blk.0.ffn_up_exps.weight"] = {3, {{0, 8, 1}, {3, 0, 1}, {5, 5, 1}}, {2, 1, 0}};
  EXPECT_THROW(importance_by_canonical(s), Error);
}

}  // namespace
}  // namespace mlxq::quant
