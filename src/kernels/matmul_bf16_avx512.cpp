// The bf16 matmul kernel for dense bf16 weights (Fast precision) on AVX512-BF16: VDPBF16PS takes
// 32 weights and 32 bf16 activations per instruction and accumulates pairs in f32. Compiled with
// those ISA flags; called only after a CPUID check (matmul.cpp). Rows go one at a time (one
// sequential stream per thread), tokens in tiles of up to 4 that share each weight load.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
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

// Many tokens: 4 rows x up to kGroup tokens, K in chunks of kChunk, so the rows' chunk (4 x 2 KB)
// stays in L1 while every token tile of the group passes over it (unchunked, the 4 rows of a
// 4096-wide o_proj fill L1 by themselves and each tile rereads them from L2). The accumulators
// wait in `acc` between chunks, and each still takes the k steps in order, so the results are
// identical to rows4_tile's. (rows4_tile is kept as a separate copy: written as a call of
// rows4_tile_acc over all of K, g++ 12 compiled rows4_group's instance at half the speed.)
constexpr int64_t kChunk = 1024, kGroup = 64;

template <int NT>
void rows4_tile_acc(const uint8_t* w, size_t row_bytes, const uint16_t* const* x, int64_t k0, int64_t k1,
                    int64_t K, __m512* acc /* [4][NT] */) {
  __m512 a[4][NT];
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < NT; ++t) a[r][t] = acc[r * NT + t];
  for (int64_t k = k0; k < k1; k += 32) {
    const __mmask32 m = K - k >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << (K - k)) - 1);
    __m512bh xv[NT];
    for (int t = 0; t < NT; ++t) xv[t] = (__m512bh)_mm512_maskz_loadu_epi16(m, x[t] + k);
    for (int r = 0; r < 4; ++r) {
      const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * row_bytes + 2 * k);
      for (int t = 0; t < NT; ++t) a[r][t] = _mm512_dpbf16_ps(a[r][t], wv, xv[t]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < NT; ++t) acc[r * NT + t] = a[r][t];
}

// Rows r..r+3 x tokens [t0, t0 + n), n <= kGroup.
void rows4_group(const Matrix& w, const Activations& x, int64_t r, int64_t t0, int64_t n, float* y, int64_t ldy) {
  __m512 acc[4 * kGroup];  // tile-major: tile j holds [4][nt] vectors at acc + 16 * j
  for (int64_t i = 0; i < 4 * n; ++i) acc[i] = _mm512_setzero_ps();
  const uint8_t* wr = w.data + size_t(r) * w.row_bytes;
  const int64_t K = w.cols;
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    const int64_t k1 = std::min(K, k0 + kChunk);
    for (int64_t t = 0; t < n; t += 4) {
      const int nt = int(std::min<int64_t>(4, n - t));
      const uint16_t* xr[4];
      for (int i = 0; i < nt; ++i) xr[i] = x.xb + x.row(t0 + t + i) * K;
      __m512* a = acc + 4 * t;
      switch (nt) {
        case 4: rows4_tile_acc<4>(wr, w.row_bytes, xr, k0, k1, K, a); break;
        case 3: rows4_tile_acc<3>(wr, w.row_bytes, xr, k0, k1, K, a); break;
        case 2: rows4_tile_acc<2>(wr, w.row_bytes, xr, k0, k1, K, a); break;
        default: rows4_tile_acc<1>(wr, w.row_bytes, xr, k0, k1, K, a); break;
      }
    }
  }
  for (int64_t t = 0; t < n; t += 4) {
    const int nt = int(std::min<int64_t>(4, n - t));
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < nt; ++j) y[(t0 + t + j) * ldy + r + i] = _mm512_reduce_add_ps(acc[4 * t + i * nt + j]);
  }
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
  if (x.T >= 8 && w.cols > kChunk) {
    for (; r + 4 <= r1; r += 4)
      for (int64_t t = 0; t < x.T; t += kGroup) rows4_group(w, x, r, t, std::min(kGroup, x.T - t), y, ldy);
  }
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
