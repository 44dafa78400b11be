// Element types of checkpoint tensors and the scalar conversions between them (bf16 and f16 are
// stored as raw uint16 bit patterns; all arithmetic happens in f32).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace mlxq {

enum class DType { F32, F16, BF16, U32, I32, U8, I8, I64, U16, I16, F64, BOOL };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: "F32", "BF16", ...
// Parses a safetensors dtype string; returns false for one mlxq does not know.
bool parse_dtype(std::string_view s, DType* out);

// Loads from possibly unaligned addresses: MLX writes safetensors headers without padding, so
// tensor data in a mapped file need not be aligned to its element size.
inline uint16_t load_u16(const void* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t load_u32(const void* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline float load_f32(const void* p) { float v; std::memcpy(&v, p, 4); return v; }

inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t bits_from_f32(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }
// Round to nearest even, as torch/MLX/numpy casts do; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = bits_from_f32(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to inf
inline float round_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

}  // namespace mlxq
