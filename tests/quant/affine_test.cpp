// The MLX affine format against MLX's own quantizer outputs (tests/data/mlx-affine): packed
// words, scales and biases bit for bit, and MLX's two-rounding dequantization; plus the spec's
// worked example and stream-packing vectors (mlx-quant-format.md §2.4, §2.6).
#include "quant/affine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <regex>
#include <vector>

#include "io/safetensors.h"
#include "test_util.h"

namespace mlxq::quant {
namespace {

std::vector<float> to_f32(const io::TensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) out[size_t(i)] = load_scalar(t.data, t.dtype, i);
  return out;
}

uint32_t bits_of(DType dt, float v) {
  if (dt == DType::F32) return bits_from_f32(v);
  return dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
}

uint32_t stored_bits(const io::TensorInfo& t, int64_t i) {
  if (t.dtype == DType::F32) return load_u32(t.data + 4 * i);
  return load_u16(t.data + 2 * i);
}

TEST(Affine, MatchesMlxQuantizerBitForBit) {
  io::SafetensorsFile in(test::data_path("mlx-affine/inputs.safetensors"));
  io::SafetensorsFile out(test::data_path("mlx-affine/mlx_outputs.safetensors"));
  const std::regex key(R"((.+)\.b(\d)g(\d+)\.weight)");
  int cases = 0;
  for (const auto& [name, wt] : out.tensors()) {
    std::smatch m;
    if (!std::regex_match(name, m, key)) continue;
    const std::string base = m[1].str() + ".b" + m[2].str() + "g" + m[3].str();
    const Spec spec{std::stoi(m[2].str()), std::stoi(m[3].str())};
    const io::TensorInfo& src = in.tensors().at(m[1].str());
    const io::TensorInfo& sc = out.tensors().at(base + ".scales");
    const io::TensorInfo& bi = out.tensors().at(base + ".biases");
    const io::TensorInfo& dq = out.tensors().at(base + ".deq");
    const int64_t K = src.shape.back(), rows = src.numel() / K;
    const int64_t wpr = K * spec.bits / 32, gpr = K / spec.group_size;
    ASSERT_EQ(wt.numel(), rows * wpr) << name;
    const std::vector<float> w = to_f32(src);
    std::vector<uint32_t> words(static_cast<size_t>(wpr));
    std::vector<float> s(static_cast<size_t>(gpr)), b(static_cast<size_t>(gpr)), deq(static_cast<size_t>(K));
    std::vector<uint8_t> sb(static_cast<size_t>(gpr) * 4), bb(static_cast<size_t>(gpr) * 4);
    for (int64_t r = 0; r < rows; ++r) {
      quantize_row(&w[size_t(r * K)], K, spec, Rounding::Cpu, words.data(), s.data(), b.data());
      const uint8_t* want = wt.data + size_t(r * wpr) * 4;  // may be unaligned: MLX does not pad
      for (int64_t i = 0; i < wpr; ++i)
        ASSERT_EQ(words[size_t(i)], load_u32(want + 4 * i)) << base << " row " << r << " word " << i;
      for (int64_t g = 0; g < gpr; ++g) {
        ASSERT_EQ(bits_of(sc.dtype, s[size_t(g)]), stored_bits(sc, r * gpr + g)) << base << " scale " << g;
        ASSERT_EQ(bits_of(bi.dtype, b[size_t(g)]), stored_bits(bi, r * gpr + g)) << base << " bias " << g;
      }
      // MLX's dequantize of the stored words/scales/biases: T(T(q*scale) + bias).
      const size_t esz = dtype_size(sc.dtype);
      dequantize_row_mlx(want, sc.data + size_t(r * gpr) * esz, bi.data + size_t(r * gpr) * esz,
                         sc.dtype, K, spec, deq.data());
      for (int64_t i = 0; i < K; ++i)
        ASSERT_EQ(bits_of(dq.dtype, deq[size_t(i)]), stored_bits(dq, r * K + i)) << base << " deq " << i;
    }
    ++cases;
  }
  // 11 inputs x 6 bit widths x the group sizes that divide each K.
  EXPECT_EQ(cases, 186);
}

TEST(Affine, SpecWorkedExample3Bit) {
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[size_t(i)] = round_bf16(-0.5f + 0.03f * float(i));
  uint32_t words[3];
  float s, b;
  quantize_row(w.data(), 32, {3, 32}, Rounding::Cpu, words, &s, &b);
  EXPECT_EQ(s, 0.125f);
  EXPECT_EQ(b, -0.5f);
  EXPECT_EQ(words[0], 0x92449200u);
  EXPECT_EQ(words[1], 0xDB248DB6u);
  EXPECT_EQ(words[2], 0xFFFDB6D6u);
  EXPECT_EQ(code_at(words, 10, 3), 2u);  // straddles words 0 and 1
}

TEST(Affine, StreamPackingAllWidths) {
  uint8_t codes[32];
  for (int i = 0; i < 32; ++i) codes[i] = uint8_t(i);
  uint32_t w5[5];
  pack_row(codes, 32, 5, w5);
  const uint32_t want[5] = {0x8A418820, 0xC5A92839, 0xCA307B9A, 0x38BDAB49, 0xFFBBCDEB};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(w5[i], want[i]);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    std::vector<uint8_t> in(128), back(128);
    for (int i = 0; i < 128; ++i) in[size_t(i)] = uint8_t((i * 37 + 11) & ((1 << bits) - 1));
    std::vector<uint32_t> words(static_cast<size_t>(packed_words(128, bits)));
    pack_row(in.data(), 128, bits, words.data());
    unpack_row(words.data(), 128, bits, back.data());
    EXPECT_EQ(in, back) << bits << " bits";
  }
}

TEST(Affine, MetalVariantDiffersOnlyWhereSpecSays) {
  // All-negative group: the GPU kernel starts the max at 0, so its range is [min, 0].
  std::vector<float> neg(32);
  for (int i = 0; i < 32; ++i) neg[size_t(i)] = -1.0f + 0.01f * float(i);
  uint32_t wc[4], wm[4];
  float sc, bc, sm, bm;
  quantize_row(neg.data(), 32, {4, 32}, Rounding::Cpu, wc, &sc, &bc);
  quantize_row(neg.data(), 32, {4, 32}, Rounding::Metal, wm, &sm, &bm);
  EXPECT_EQ(bc, -1.0f);
  EXPECT_EQ(bm, -1.0f);
  EXPECT_NE(sc, sm);  // range 0.69 vs 1.0 over 15 bins
  EXPECT_FLOAT_EQ(sm, 1.0f / 15.0f);
  // Mixed signs, no exact ties: identical.
  std::vector<float> mixed(64);
  for (int i = 0; i < 64; ++i) mixed[size_t(i)] = std::sin(float(i) * 0.7f) * 0.3f + 0.01f;
  uint32_t a[8], c[8];
  float s1, b1, s2, b2;
  quantize_row(mixed.data(), 64, {4, 64}, Rounding::Cpu, a, &s1, &b1);
  quantize_row(mixed.data(), 64, {4, 64}, Rounding::Metal, c, &s2, &b2);
  EXPECT_EQ(std::memcmp(a, c, sizeof a), 0);
  EXPECT_EQ(s1, s2);
}

TEST(Affine, DequantizeF32ErrorWithinHalfStep) {
  std::vector<float> w(256), back(256);
  for (int i = 0; i < 256; ++i) w[size_t(i)] = round_bf16(std::cos(float(i) * 1.3f) * 0.05f);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    std::vector<uint32_t> words(static_cast<size_t>(packed_words(256, bits)));
    float s[4], b[4];
    quantize_row(w.data(), 256, {bits, 64}, Rounding::Cpu, words.data(), s, b);
    dequantize_row_f32(words.data(), s, b, DType::F32, 256, {bits, 64}, back.data());
    for (int i = 0; i < 256; ++i) {
      // Clipping at the far extreme can cost up to one step; elsewhere half a step.
      EXPECT_LE(std::fabs(back[size_t(i)] - w[size_t(i)]), std::fabs(s[i / 64]) * 1.0001f) << bits;
    }
  }
}

}  // namespace
}  // namespace mlxq::quant
