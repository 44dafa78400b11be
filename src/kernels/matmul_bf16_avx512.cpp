// The bf16 matmul kernel for dense bf16 weights (Fast precision) on AVX512-BF16: VDPBF16PS takes
// 32 weights and 32 bf16 activations per instruction and accumulates pairs in f32. Compiled with
// those ISA flags; called only after a CPUID check (matmul.cpp). Rows go one at a time (one
// sequential stream per thread), tokens in tiles of up to 4 that share each weight load.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "kernels/matmul.h"
#include "kernels/matmul_q8.h"

namespace mlxq::kernels::q8 {

namespace {

constexpr int kPrefetch = 4096;

// One row x NT tokens. The accumulation order (one f32 accumulator per token, 32-weight steps,
// masked tail) is the same as rows4_tile's, so a token's result does not depend on how many
// tokens share the call (chunked prefill and decode agree exactly).
template <int NT>
void row_tile(const uint8_t* w, const uint16_t* const* x, int64_t K, float* out) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 m = K - k >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << (K - k)) - 1);
    if (k % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + 2 * k + kPrefetch), _MM_HINT_T0);
    const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w + 2 * k);
    for (int t = 0; t < NT; ++t)
      acc[t] = _mm512_dpbf16_ps(acc[t], wv, (__m512bh)_mm512_maskz_loadu_epi16(m, x[t] + k));
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// Prefill: 4 rows x NT tokens, so each activation load feeds 4 dot products.
template <int NT>
void rows4_tile(const uint8_t* w, size_t row_bytes, const uint16_t* const* x, int64_t K, float* out) {
  __m512 acc[4][NT];
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 m = K - k >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << (K - k)) - 1);
    __m512bh xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = (__m512bh)_mm512_maskz_loadu_epi16(m, x[t] + k);
    for (int r = 0; r < 4; ++r) {
      const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * row_bytes + 2 * k);
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < NT; ++t) out[r * NT + t] = _mm512_reduce_add_ps(acc[r][t]);
}

template <int NT>
void run_rows4(const Matrix& w, const Activations& x, int64_t r, int64_t t0, float* y, int64_t ldy) {
  const uint16_t* xr[NT];
  for (int t = 0; t < NT; ++t) xr[t] = x.xb + x.row(t0 + t) * w.cols;
  float out[4 * NT];
  rows4_tile<NT>(w.data + size_t(r) * w.row_bytes, w.row_bytes, xr, w.cols, out);
  for (int i = 0; i < 4; ++i)
    for (int t = 0; t < NT; ++t) y[(t0 + t) * ldy + r + i] = out[i * NT + t];
}

template <int NT>
void run_tile(const Matrix& w, const Activations& x, int64_t r, int64_t t0, float* y, int64_t ldy) {
  const uint16_t* xr[NT];
  for (int t = 0; t < NT; ++t) xr[t] = x.xb + x.row(t0 + t) * w.cols;
  float out[NT];
  row_tile<NT>(w.data + size_t(r) * w.row_bytes, xr, w.cols, out);
  for (int t = 0; t < NT; ++t) y[(t0 + t) * ldy + r] = out[t];
}

}  // namespace

void matmul_rows_bf16_avx512(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                             int64_t ldy) {
  int64_t r = r0;
  if (x.T >= 4) {
    for (; r + 4 <= r1; r += 4) {
      int64_t t = 0;
      for (; t + 4 <= x.T; t += 4) run_rows4<4>(w, x, r, t, y, ldy);
      switch (x.T - t) {
        case 3: run_rows4<3>(w, x, r, t, y, ldy); break;
        case 2: run_rows4<2>(w, x, r, t, y, ldy); break;
        case 1: run_rows4<1>(w, x, r, t, y, ldy); break;
        default: break;
      }
    }
  }
  for (; r < r1; ++r) {
    int64_t t = 0;
    for (; t + 4 <= x.T; t += 4) run_tile<4>(w, x, r, t, y, ldy);
    switch (x.T - t) {
      case 3: run_tile<3>(w, x, r, t, y, ldy); break;
      case 2: run_tile<2>(w, x, r, t, y, ldy); break;
      case 1: run_tile<1>(w, x, r, t, y, ldy); break;
      default: break;
    }
  }
}

}  // namespace mlxq::kernels::q8
