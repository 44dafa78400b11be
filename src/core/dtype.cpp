// Element-type table and IEEE half-precision conversions.
#include "core/dtype.h"

#include <cmath>

namespace mlxq {

namespace {
struct DTypeInfo { DType t; const char* name; size_t size; };
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 4}, {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2},
    {DType::U32, "U32", 4}, {DType::I32, "I32", 4},   {DType::U8, "U8", 1},
    {DType::I8, "I8", 1},   {DType::I64, "I64", 8},   {DType::U16, "U16", 2},
    {DType::I16, "I16", 2}, {DType::F64, "F64", 8},   {DType::BOOL, "BOOL", 1},
};
}  // namespace

size_t dtype_size(DType t) {
  for (const auto& d : kDTypes) if (d.t == t) return d.size;
  return 0;
}
const char* dtype_name(DType t) {
  for (const auto& d : kDTypes) if (d.t == t) return d.name;
  return "?";
}
bool parse_dtype(std::string_view s, DType* out) {
  for (const auto& d : kDTypes) {
    if (s == d.name) { *out = d.t; return true; }
  }
  return false;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    if (man == 0) return f32_from_bits(sign);
    float v = std::ldexp(float(man), -24);  // subnormal: man * 2^-24
    return sign ? -v : v;
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13));
  return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t u = bits_from_f32(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return uint16_t(sign | 0x7e00u);          // NaN
  if (u >= 0x477ff000u) return uint16_t(sign | 0x7c00u);         // rounds to >= 65520: inf
  if (u < 0x38800000u) {                                         // below 2^-14: subnormal range
    // value * 2^24 rounded to nearest even gives the subnormal mantissa (may carry to 0x400).
    float v = f32_from_bits(u) * 16777216.0f;
    return uint16_t(sign | uint16_t(std::nearbyint(v)));
  }
  // Normal: rebias exponent and round the 13 dropped mantissa bits to nearest even.
  uint32_t r = u - 0x38000000u;  // exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return uint16_t(sign | (r >> 13));
}

}  // namespace mlxq
