// Safetensors reading: valid files in both header styles, and every corruption the issue lists
// giving an Error that names the file (and tensor), never a crash.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"

namespace mlxq::io {
namespace {

using nlohmann::json;

std::string st_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

// A valid two-tensor file: a F32 [2,2] and a BF16 [3].
json good_header() {
  return {{"__metadata__", {{"format", "pt"}}},
          {"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}},
          {"b", {{"dtype", "BF16"}, {"shape", {3}}, {"data_offsets", {16, 22}}}}};
}

std::string expect_error(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << path;
  return "";
}

TEST(Safetensors, ReadsValidFilePaddedOrNot) {
  test::TempDir d;
  std::string data(22, '\0');
  const float one = 1.5f;
  std::memcpy(&data[4], &one, 4);
  for (bool pad : {false, true}) {
    std::string h = good_header().dump();
    if (pad) h.append((8 - h.size() % 8) % 8, ' ');
    test::write_file(d / "m.safetensors", st_bytes(h, data));
    SafetensorsFile f(d / "m.safetensors");
    ASSERT_EQ(f.tensors().size(), 2u);
    const TensorInfo& a = f.tensors().at("a");
    EXPECT_EQ(a.dtype, DType::F32);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(load_f32(a.data + 4), 1.5f);  // unpadded headers leave data unaligned
    EXPECT_EQ(f.metadata().at("format"), "pt");
  }
}

TEST(Safetensors, CorruptFilesGiveClearErrors) {
  test::TempDir d;
  const std::string data(22, '\0');
  const std::string p = d / "bad.safetensors";
  struct Case { std::string name, bytes, expect; };
  json overlap = good_header();
  overlap["b"]["data_offsets"] = {14, 20};
  json out_of_range = good_header();
  out_of_range["b"]["data_offsets"] = {16, 40};
  json mismatch = good_header();
  mismatch["a"]["shape"] = {2, 3};
  json bad_dtype = good_header();
  bad_dtype["a"]["dtype"] = "Q9";
  json bad_shape = good_header();
  bad_shape["a"]["shape"] = "2x2";
  std::string huge_len = st_bytes(good_header().dump(), data);
  huge_len[0] = char(0xff);
  huge_len[5] = char(0x7f);
  const std::vector<Case> cases = {
      {"too short", "abc", "truncated"},
      {"header length past end", huge_len, "header length"},
      {"truncated data", st_bytes(good_header().dump(), data.substr(0, 10)), "out of range"},
      {"offsets out of range", st_bytes(out_of_range.dump(), data), "'b': data_offsets [16, 40] out of range"},
      {"overlap", st_bytes(overlap.dump(), data), "overlap"},
      {"dtype/shape mismatch", st_bytes(mismatch.dump(), data), "'a': 16 bytes for dtype F32 and shape [2, 3], expected 24"},
      {"unknown dtype", st_bytes(bad_dtype.dump(), data), "unknown dtype 'Q9'"},
      {"shape not array", st_bytes(bad_shape.dump(), data), "shape"},
      {"header not JSON", st_bytes("{\"a\": [", data), "not valid JSON"},
  };
  for (const Case& c : cases) {
    test::write_file(p, c.bytes);
    const std::string msg = expect_error(p);
    EXPECT_NE(msg.find(p), std::string::npos) << c.name << ": " << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.name << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.name << ": one line";
  }
}

// A file cut at any length, or with any single header byte flipped, is an Error, never a crash
// (run under ASan/UBSan in CI).
TEST(Safetensors, TruncationsAndByteFlipsNeverCrash) {
  test::TempDir d;
  const std::string src = test::read_file(test::data_path("gemma4-tiny-a/mlx-q/model.safetensors"));
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | uint8_t(src[size_t(i)]);
  const std::string p = d / "m.safetensors";
  int errors = 0, loads = 0;
  for (size_t cut : {size_t(0), size_t(7), size_t(8), size_t(100), size_t(8 + hlen - 1), size_t(8 + hlen),
                     size_t(8 + hlen + 1), src.size() / 2, src.size() - 1}) {
    test::write_file(p, src.substr(0, cut));
    try {
      SafetensorsFile f(p);
      ++loads;
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_EQ(errors, 9);
  for (size_t i = 0; i < 8 + hlen; i += 97) {
    std::string b = src;
    b[i] = char(b[i] ^ 0x5a);
    test::write_file(p, b);
    try {
      SafetensorsFile f(p);
      ++loads;  // a flip inside a name can still be a valid file
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 9);
}

TEST(Checkpoint, IndexNamingMissingShard) {
  test::TempDir d;
  test::write_file(d / "model-00001-of-00002.safetensors", st_bytes(good_header().dump(), std::string(22, '\0')));
  json idx = {{"metadata", {{"total_size", 22}}},
              {"weight_map", {{"a", "model-00001-of-00002.safetensors"}, {"c", "model-00002-of-00002.safetensors"}}}};
  test::write_file(d / "model.safetensors.index.json", idx.dump());
  try {
    Checkpoint c(d.str());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("names shard 'model-00002-of-00002.safetensors', which does not exist"),
              std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model.safetensors.index.json"), std::string::npos);
  }
}

TEST(Checkpoint, IndexListsTensorTheShardLacks) {
  test::TempDir d;
  test::write_file(d / "model.safetensors", st_bytes(good_header().dump(), std::string(22, '\0')));
  json idx = {{"weight_map", {{"a", "model.safetensors"}, {"zz", "model.safetensors"}}}};
  test::write_file(d / "model.safetensors.index.json", idx.dump());
  EXPECT_THROW(Checkpoint c(d.str()), Error);
  test::write_file(d / "model.safetensors.index.json", "{not json");
  EXPECT_THROW(Checkpoint c(d.str()), Error);
}

TEST(Checkpoint, ReadsGoldenShardsAndSingleFile) {
  Checkpoint mlx(test::data_path("gemma4-tiny-a/mlx-q"));
  EXPECT_EQ(mlx.files().size(), 1u);
  EXPECT_EQ(mlx.total_bytes(), 5285836u);  // the index's total_size
  const TensorInfo* e = mlx.find("language_model.model.embed_tokens.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{2048, 40}));
  Checkpoint hf(test::data_path("gemma4-tiny-a/hf"));
  EXPECT_EQ(hf.tensors().size(), 133u);
  EXPECT_THROW(Checkpoint("/nonexistent/dir"), Error);
}

}  // namespace
}  // namespace mlxq::io
