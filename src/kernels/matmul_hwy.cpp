// f32 matmul kernels through Highway (runtime dispatch over SSE4/AVX2/AVX-512/NEON/...): the
// Exact precision for every matrix, and the Fast precision's kernel for dense weights and for
// quantized matrices the int8 kernel does not take. Quantized rows are dequantized to f32 with
// the format's own scalar dequantizer (quant/affine.h) - one f32 rounding of scale*q + bias, as
// the golden logits need - and dotted with SIMD; bf16 rows are widened in registers.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstring>
#include <vector>

#include "kernels/matmul_q8.h"
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
      w.row_f32(r, row.data());
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

void matmul_rows_f32(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                     int64_t ldy) {
  HWY_DYNAMIC_DISPATCH(MatmulRowsF32)(w, x, r0, r1, y, ldy);
}
const char* target_name() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }
}  // namespace mlxq::kernels::hwy_kernels
#endif
