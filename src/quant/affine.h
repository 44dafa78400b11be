// The MLX affine quantization format (mlx-quant-format.md §2): per-group scale and bias,
// integer codes packed as one little-endian LSB-first bit stream per row into uint32 words.
// This file holds the format's definition (spec, pack/unpack, quantizer, dequantizer) in plain
// scalar code; it is both the writer's implementation and the reference the kernels test against.
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace mlxq::quant {

struct Spec {
  int bits = 4;         // 2, 3, 4, 5, 6 or 8
  int group_size = 64;  // 32, 64 or 128
  bool operator==(const Spec& o) const { return bits == o.bits && group_size == o.group_size; }
};

bool valid_bits(int bits);
bool valid_group_size(int gs);
// Words per row of K values; K must be a multiple of the group size.
inline int64_t packed_words(int64_t k, int bits) { return k * bits / 32; }

// Rounding semantics of MLX's CPU kernel (round half to even, group max starts at -inf) or of
// its GPU kernels (round half away from zero, group max starts at 0).
enum class Rounding { Cpu, Metal };

// Quantizes one row of k values (k % group_size == 0). Writes k*bits/32 words and k/group_size
// scales and biases as unrounded f32; the caller stores them in the weight dtype (the codes were
// chosen with the unrounded values, exactly as MLX does).
void quantize_row(const float* w, int64_t k, Spec spec, Rounding rounding, uint32_t* words,
                  float* scales, float* biases);

// Code i of a packed row (any bits in 2..8).
// `words` may be unaligned (it usually points into a mapped file).
inline uint32_t code_at(const void* words, int64_t i, int bits) {
  const uint8_t* p = static_cast<const uint8_t*>(words);
  const uint64_t bit = uint64_t(i) * uint64_t(bits);
  const uint64_t w = bit >> 5;
  const unsigned off = unsigned(bit & 31);
  uint64_t v = load_u32(p + 4 * w) >> off;
  if (off + unsigned(bits) > 32) v |= uint64_t(load_u32(p + 4 * (w + 1))) << (32 - off);
  return uint32_t(v) & ((1u << bits) - 1u);
}
void unpack_row(const void* words, int64_t k, int bits, uint8_t* codes);
void pack_row(const uint8_t* codes, int64_t k, int bits, uint32_t* words);

// Reads element i of an array stored as `dt` (BF16, F16 or F32), aligned or not.
inline float load_scalar(const void* p, DType dt, int64_t i) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  switch (dt) {
    case DType::BF16: return bf16_to_f32(load_u16(b + 2 * i));
    case DType::F16: return f16_to_f32(load_u16(b + 2 * i));
    default: return load_f32(b + 4 * i);
  }
}

// The engine's dequantization: w = scale*q + bias in f32, one rounding (what the golden logits
// need; mlx-quant-format.md §2.5).
void dequantize_row_f32(const void* words, const void* scales, const void* biases,
                        DType sb_dtype, int64_t k, Spec spec, float* out);
// MLX's own `dequantize` op: T(T(q*scale) + bias) in the scales dtype T (two roundings).
void dequantize_row_mlx(const void* words, const void* scales, const void* biases,
                        DType sb_dtype, int64_t k, Spec spec, float* out);

// Rounds f32 to the storage dtype and back (identity for F32).
float round_to(DType dt, float v);

}  // namespace mlxq::quant
