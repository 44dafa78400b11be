// f32 matmul kernels through Highway (runtime dispatch over SSE4/AVX2/AVX-512/NEON/...): the
// Exact precision for every matrix, and the Fast precision's kernel for dense weights and for
// quantized matrices the int8 kernel does not take. Quantized rows are dequantized to f32 with
// SIMD (DequantRow: byte shuffle + per-lane shift cut the LSB-first codes out; w = scale*q + bias
// rounded exactly as the scalar quant::dequantize_row_f32, which the tests hold it to), then
// dotted with SIMD; bf16 rows are widened in registers.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/matmul_internal.h"
#include "quant/affine.h"

HWY_BEFORE_NAMESPACE();
namespace mlxq::kernels::hwy_kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DU32 = hn::RebindToUnsigned<DF>;
using DU16 = hn::Rebind<uint16_t, DF>;

// NT dot products of one f32 row with NT activation rows, accumulated in vectors.
template <int NT>
void dot_f32(const float* w, const float* const* x, int64_t K, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  hn::Vec<DF> acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = hn::Zero(df);
  int64_t k = 0;
  for (; k + int64_t(N) <= K; k += int64_t(N)) {
    const auto wv = hn::LoadU(df, w + k);
    for (int t = 0; t < NT; ++t) acc[t] = hn::MulAdd(wv, hn::LoadU(df, x[t] + k), acc[t]);
  }
  for (int t = 0; t < NT; ++t) {
    float s = hn::GetLane(hn::SumOfLanes(df, acc[t]));
    for (int64_t j = k; j < K; ++j) s += w[j] * x[t][j];
    out[t] = s;
  }
}

// The same with a bf16 row (unaligned, read as uint16 and widened by a 16-bit shift).
template <int NT>
void dot_bf16(const uint8_t* w, const float* const* x, int64_t K, float* out) {
  const DF df;
  const DU32 du32;
  const DU16 du16;
  const size_t N = hn::Lanes(df);
  hn::Vec<DF> acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = hn::Zero(df);
  int64_t k = 0;
  for (; k + int64_t(N) <= K; k += int64_t(N)) {
    uint16_t raw[hn::MaxLanes(du16)];
    std::memcpy(raw, w + 2 * k, N * 2);
    const auto wv = hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, raw))));
    for (int t = 0; t < NT; ++t) acc[t] = hn::MulAdd(wv, hn::LoadU(df, x[t] + k), acc[t]);
  }
  for (int t = 0; t < NT; ++t) {
    float s = hn::GetLane(hn::SumOfLanes(df, acc[t]));
    for (int64_t j = k; j < K; ++j) s += bf16_to_f32(load_u16(w + 2 * j)) * x[t][j];
    out[t] = s;
  }
}

// Codes of one row into f32. A step covers max(N, 8) codes (N = lanes; 8 codes are exactly B
// bytes): at most 16 bytes (B <= 6), read as one 128-bit block repeated in every block of the
// vector. Per vector of the step, a byte table gathers the 4 bytes holding code j into u32 lane
// j, which is shifted right by its bit offset and masked. Every group (32, 64 or 128 codes) is
// a whole number of steps, so scale and bias are constant within a step.
#if HWY_TARGET != HWY_SCALAR
template <int B>
void DequantRowBits(const uint8_t* p, const Matrix& w, int64_t r, float* out) {
  const DF df;
  const DU32 du32;
  const hn::Repartition<uint8_t, DF> du8;
  const hn::RebindToSigned<DF> di32;
  const size_t N = hn::Lanes(df);
  const size_t nv = N >= 8 ? 1 : 8 / N;  // vectors per step
  const int64_t codes = int64_t(N * nv), step_bytes = codes * B / 8;
  struct Tables {  // built once per target and bit width, not per row
    alignas(64) uint8_t table[2][64] = {};
    alignas(64) uint32_t shifts[2][16] = {};
    Tables(size_t N, size_t nv) {
      for (size_t v = 0; v < nv; ++v)
        for (size_t j = 0; j < N; ++j) {
          const size_t bit = (v * N + j) * B;  // < 16 * 6: bytes bit/8 .. bit/8+3 lie in the block
          for (size_t i = 0; i < 4; ++i) table[v][4 * j + i] = uint8_t(bit / 8 + i);
          shifts[v][j] = uint32_t(bit % 8);
        }
    }
  };
  static const Tables t(N, nv);
  const auto& table = t.table;
  const auto& shifts = t.shifts;
  const auto mask = hn::Set(du32, (1u << B) - 1);
  const int gs = w.spec.group_size;
  const int64_t K = w.cols, row_bytes = K * B / 8;
  const uint8_t* sc = w.scales + size_t(r) * w.sb_row_bytes;
  const uint8_t* bi = w.biases + size_t(r) * w.sb_row_bytes;
  const auto tbl0 = hn::Load(du8, table[0]), tbl1 = hn::Load(du8, table[1]);
  const auto sh0 = hn::Load(du32, shifts[0]), sh1 = hn::Load(du32, shifts[1]);
  for (int64_t g = 0, off = 0; g < K / gs; ++g) {
    const auto s = hn::Set(df, quant::load_scalar(sc, w.dtype, g));
    const auto b = hn::Set(df, quant::load_scalar(bi, w.dtype, g));
    for (int64_t k = g * gs; k < (g + 1) * gs; k += codes, off += step_bytes) {
      hn::Vec<decltype(du8)> raw;
      if (off + 16 <= row_bytes) {
        raw = hn::LoadDup128(du8, p + off);
      } else {  // the row's last bytes: do not read past them
        alignas(16) uint8_t tail[16] = {0};
        std::memcpy(tail, p + off, size_t(row_bytes - off));
        raw = hn::LoadDup128(du8, tail);
      }
      for (size_t v = 0; v < nv; ++v) {
        const auto words = hn::BitCast(du32, hn::TableLookupBytes(raw, v ? tbl1 : tbl0));
        const auto q = hn::And(hn::operator>>(words, v ? sh1 : sh0), mask);
        const auto qf = hn::ConvertTo(df, hn::BitCast(di32, q));
        hn::StoreU(hn::Add(hn::Mul(s, qf), b), df, out + k + int64_t(v * N));
      }
    }
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

// Row r of w in f32, as Matrix::row_f32 computes it.
void DequantRow(const Matrix& w, int64_t r, float* out) {
#if HWY_TARGET == HWY_SCALAR  // one lane, no byte shuffle
  return w.row_f32(r, out);
#else
  const DF df;
  // Vectors wider than 512 bits (and 8-bit codes, below): the scalar form.
  if (!w.quantized || hn::Lanes(df) > 16 || hn::Lanes(df) < 4) return w.row_f32(r, out);
  const uint8_t* p = w.data + size_t(r) * w.row_bytes;
  dispatch_bits(AllBitWidths{}, w.spec.bits, "f32-hwy", [&](auto B) {
    if constexpr (B == 8) {
      w.row_f32(r, out);
    } else {
      DequantRowBits<B>(p, w, r, out);
    }
  });
#endif
}

template <int NT>
void row_tile(const Matrix& w, const Activations& x, int64_t r, int64_t t0, const float* wf32,
              float* y, int64_t ldy) {
  const float* xr[NT];
  for (int t = 0; t < NT; ++t) xr[t] = x.x + x.row(t0 + t) * x.ldx;
  float out[NT];
  if (wf32) {
    dot_f32<NT>(wf32, xr, w.cols, out);
  } else {
    dot_bf16<NT>(w.data + size_t(r) * w.row_bytes, xr, w.cols, out);
  }
  for (int t = 0; t < NT; ++t) y[(t0 + t) * ldy + r] = out[t];
}

void MatmulRowsF32(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                   int64_t ldy) {
  thread_local std::vector<float> row;
  const bool direct_bf16 = !w.quantized && w.dtype == DType::BF16;
  if (!direct_bf16 && int64_t(row.size()) < w.cols) row.resize(size_t(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    const float* wf = nullptr;
    if (!direct_bf16) {
      DequantRow(w, r, row.data());
      wf = row.data();
    }
    int64_t t = 0;
    for (; t + 4 <= x.T; t += 4) row_tile<4>(w, x, r, t, wf, y, ldy);
    switch (x.T - t) {
      case 3: row_tile<3>(w, x, r, t, wf, y, ldy); break;
      case 2: row_tile<2>(w, x, r, t, wf, y, ldy); break;
      case 1: row_tile<1>(w, x, r, t, wf, y, ldy); break;
      default: break;
    }
  }
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace mlxq::kernels::hwy_kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mlxq::kernels::hwy_kernels {
HWY_EXPORT(MatmulRowsF32);
HWY_EXPORT(TargetName);
HWY_EXPORT(DequantRow);

void matmul_rows_f32(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                     int64_t ldy) {
  HWY_DYNAMIC_DISPATCH(MatmulRowsF32)(w, x, r0, r1, y, ldy);
}
const char* target_name() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }
void dequant_row_f32(const Matrix& w, int64_t r, float* out) { HWY_DYNAMIC_DISPATCH(DequantRow)(w, r, out); }
}  // namespace mlxq::kernels::hwy_kernels
#endif
