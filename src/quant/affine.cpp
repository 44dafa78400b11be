// Scalar implementation of the MLX affine format (mlx-quant-format.md §2.2-2.5).
#include "quant/affine.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace mlxq::quant {

bool valid_bits(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
}
bool valid_group_size(int gs) { return gs == 32 || gs == 64 || gs == 128; }

float round_to(DType dt, float v) {
  switch (dt) {
    case DType::BF16: return round_bf16(v);
    case DType::F16: return round_f16(v);
    default: return v;
  }
}

namespace {
// Round half away from zero (Metal's `round`).
inline float round_away(float x) { return std::round(x); }
// Round half to even (`rint` in the default FP environment).
inline float round_even(float x) { return std::nearbyint(x); }
}  // namespace

void quantize_row(const float* w, int64_t k, Spec spec, Rounding rounding, uint32_t* words,
                  float* scales, float* biases) {
  const int gs = spec.group_size;
  const float n_bins = float((1 << spec.bits) - 1);
  const float eps = 1e-7f;
  const bool metal = rounding == Rounding::Metal;
  auto rnd = [metal](float x) { return metal ? round_away(x) : round_even(x); };
  std::memset(words, 0, size_t(packed_words(k, spec.bits)) * 4);
  for (int64_t g = 0; g < k / gs; ++g) {
    const float* x = w + g * gs;
    float w_max = metal ? 0.0f : -std::numeric_limits<float>::infinity();
    float w_min = std::numeric_limits<float>::infinity();
    for (int i = 0; i < gs; ++i) {
      w_max = std::max(w_max, x[i]);
      w_min = std::min(w_min, x[i]);
    }
    const bool mask = std::fabs(w_min) > std::fabs(w_max);
    float scale = std::max((w_max - w_min) / n_bins, eps);
    scale = mask ? scale : -scale;
    const float edge = mask ? w_min : w_max;
    const float q0 = rnd(edge / scale);
    float bias = 0.0f;
    if (q0 != 0.0f) {
      scale = edge / q0;
      bias = edge;
    }
    for (int i = 0; i < gs; ++i) {
      float q = rnd((x[i] - bias) / scale);
      q = std::min(std::max(q, 0.0f), n_bins);
      const uint64_t code = uint64_t(q);
      const uint64_t bit = uint64_t(g * gs + i) * uint64_t(spec.bits);
      const uint64_t wi = bit >> 5;
      const unsigned off = unsigned(bit & 31);
      words[wi] |= uint32_t(code << off);
      if (off + unsigned(spec.bits) > 32) words[wi + 1] |= uint32_t(code >> (32 - off));
    }
    scales[g] = scale;
    biases[g] = bias;
  }
}

void unpack_row(const void* words, int64_t k, int bits, uint8_t* codes) {
  for (int64_t i = 0; i < k; ++i) codes[i] = uint8_t(code_at(words, i, bits));
}

void pack_row(const uint8_t* codes, int64_t k, int bits, uint32_t* words) {
  std::memset(words, 0, size_t(packed_words(k, bits)) * 4);
  for (int64_t i = 0; i < k; ++i) {
    const uint64_t bit = uint64_t(i) * uint64_t(bits);
    const unsigned off = unsigned(bit & 31);
    words[bit >> 5] |= uint32_t(uint64_t(codes[i]) << off);
    if (off + unsigned(bits) > 32) words[(bit >> 5) + 1] |= uint32_t(uint64_t(codes[i]) >> (32 - off));
  }
}

namespace {
// Eight consecutive codes occupy exactly BITS bytes of the LSB-first stream, and every group
// (32, 64 or 128 codes) starts on such a boundary, so a row decodes 8 codes per BITS bytes.
template <int BITS>
void dequantize_groups(const uint8_t* p, const void* scales, const void* biases, DType sb_dtype,
                       int64_t k, int gs, float* out) {
  constexpr uint64_t kMask = (1u << BITS) - 1;
  for (int64_t g = 0; g < k / gs; ++g) {
    const float s = load_scalar(scales, sb_dtype, g), b = load_scalar(biases, sb_dtype, g);
    for (int c = 0; c < gs; c += 8, p += BITS, out += 8) {
      uint64_t v = 0;
      std::memcpy(&v, p, BITS);  // little-endian host (x86-64, AArch64)
      for (int i = 0; i < 8; ++i) out[i] = s * float((v >> (i * BITS)) & kMask) + b;
    }
  }
}
}  // namespace

void dequantize_row_f32(const void* words, const void* scales, const void* biases,
                        DType sb_dtype, int64_t k, Spec spec, float* out) {
  const uint8_t* p = static_cast<const uint8_t*>(words);
  switch (spec.bits) {
    case 2: return dequantize_groups<2>(p, scales, biases, sb_dtype, k, spec.group_size, out);
    case 3: return dequantize_groups<3>(p, scales, biases, sb_dtype, k, spec.group_size, out);
    case 4: return dequantize_groups<4>(p, scales, biases, sb_dtype, k, spec.group_size, out);
    case 5: return dequantize_groups<5>(p, scales, biases, sb_dtype, k, spec.group_size, out);
    case 6: return dequantize_groups<6>(p, scales, biases, sb_dtype, k, spec.group_size, out);
    default: return dequantize_groups<8>(p, scales, biases, sb_dtype, k, spec.group_size, out);
  }
}

void dequantize_row_mlx(const void* words, const void* scales, const void* biases,
                        DType sb_dtype, int64_t k, Spec spec, float* out) {
  for (int64_t g = 0; g < k / spec.group_size; ++g) {
    const float s = load_scalar(scales, sb_dtype, g), b = load_scalar(biases, sb_dtype, g);
    for (int i = 0; i < spec.group_size; ++i) {
      const int64_t j = g * spec.group_size + i;
      out[j] = round_to(sb_dtype, round_to(sb_dtype, float(code_at(words, j, spec.bits)) * s) + b);
    }
  }
}

}  // namespace mlxq::quant
