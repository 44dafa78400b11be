// The bf16 matmul kernel for dense bf16 weights (Fast and Int8 precision) on AVX512-BF16:
// VDPBF16PS takes 32 weights and 32 bf16 activations per instruction and accumulates pairs in
// f32. Compiled with those ISA flags; called only after a CPUID check (matmul.cpp). Decode takes
// rows in pairs that share each activation load; prefill takes tiles of rows x tokens.
//
// Two-part activations (Fast, x ~ xb + xb2): each weight register meets both parts, and the two
// parts accumulate in separate registers (summed at the end). Decode (one token) runs four
// chains per part and row over successive 32-wide steps, so VDPBF16PS's latency does not bound a
// row, and prefetches 16 KB ahead into L2. Tiles of several tokens take one chain per (row,
// token, part), so a token's result does not depend on how many tokens (two or more) share the
// call. With two parts the tiles are 4 rows x 2 tokens (4 x 4 would need 32 accumulators).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"

namespace mlxq::kernels::q8 {

namespace {

constexpr int kPrefetch = 4096;

#define MLXQ_BF16_INLINE __attribute__((always_inline)) inline

inline __mmask32 tail_mask(int64_t k, int64_t K) {
  return K - k >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << (K - k)) - 1);
}
inline __m512bh load_bh(__mmask32 m, const void* p) { return (__m512bh)_mm512_maskz_loadu_epi16(m, p); }

// x[t] / x2[t]: the parts of token t (x2 unused without S).
template <int NT, bool S>
struct Tokens {
  const uint16_t* x[NT];
  const uint16_t* x2[NT];
  Tokens(const Activations& a, int64_t t0, int64_t K) {
    for (int t = 0; t < NT; ++t) {
      x[t] = a.xb + a.row(t0 + t) * K;
      x2[t] = S ? a.xb2 + a.row(t0 + t) * K : nullptr;
    }
  }
};

// Decode's software prefetch: 16 KB ahead into L2 (prefetcht2). Two row streams prefetched into
// L1 4 KB ahead ran at half the one-row speed from DRAM; into L2 they beat one row.
constexpr int kDecodePrefetch = 16384;

// R rows x one token (decode), R <= 2: four chains per part and row (hot 4096-wide rows, Fast:
// 31-37 -> 40-45 GB/s per core), each row summed in the same order whatever R is. Two rows
// share each activation load: with two-part activations a one-row step is three loads per 64
// bytes of weights, and loads, not VDPBF16PS, bound it.
template <int R, bool S>
void rows_decode(const uint8_t* const* w, const uint16_t* x, const uint16_t* x2, int64_t K, float* out) {
  __m512 a[R][4], a2[R][4];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < 4; ++u) a[r][u] = a2[r][u] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 128 <= K; k += 128) {
    __m512bh xv[4], xv2[4];
    for (int u = 0; u < 4; ++u) {
      xv[u] = (__m512bh)_mm512_loadu_si512(x + k + 32 * u);
      if constexpr (S) xv2[u] = (__m512bh)_mm512_loadu_si512(x2 + k + 32 * u);
    }
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < 4; ++u) {
        _mm_prefetch(reinterpret_cast<const char*>(w[r] + 2 * k + 64 * u + kDecodePrefetch), _MM_HINT_T2);
        const __m512bh wv = (__m512bh)_mm512_loadu_si512(w[r] + 2 * k + 64 * u);
        a[r][u] = _mm512_dpbf16_ps(a[r][u], wv, xv[u]);
        if constexpr (S) a2[r][u] = _mm512_dpbf16_ps(a2[r][u], wv, xv2[u]);
      }
  }
  for (int r = 0; r < R; ++r) {
    __m512 acc = _mm512_add_ps(_mm512_add_ps(a[r][0], a[r][1]), _mm512_add_ps(a[r][2], a[r][3]));
    __m512 acc2 = _mm512_add_ps(_mm512_add_ps(a2[r][0], a2[r][1]), _mm512_add_ps(a2[r][2], a2[r][3]));
    for (int64_t j = k; j < K; j += 32) {
      const __mmask32 m = tail_mask(j, K);
      const __m512bh wv = load_bh(m, w[r] + 2 * j);
      acc = _mm512_dpbf16_ps(acc, wv, load_bh(m, x + j));
      if constexpr (S) acc2 = _mm512_dpbf16_ps(acc2, wv, load_bh(m, x2 + j));
    }
    out[r] = _mm512_reduce_add_ps(S ? _mm512_add_ps(acc, acc2) : acc);
  }
}

// One 32-wide step of rows2_tokens (mask m: the columns of a last partial step).
template <int NT, bool S>
MLXQ_BF16_INLINE void rows2_step(__m512 (&a)[2][NT], __m512 (&a2)[2][NT], __m512bh v0, __m512bh v1,
                                 const Tokens<NT, S>& x, int64_t k, __mmask32 m) {
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    const __m512bh xv = load_bh(m, x.x[t] + k);
    a[0][t] = _mm512_dpbf16_ps(a[0][t], v0, xv);
    a[1][t] = _mm512_dpbf16_ps(a[1][t], v1, xv);
    if constexpr (S) {
      const __m512bh xv2 = load_bh(m, x.x2[t] + k);
      a2[0][t] = _mm512_dpbf16_ps(a2[0][t], v0, xv2);
      a2[1][t] = _mm512_dpbf16_ps(a2[1][t], v1, xv2);
    }
  }
}

// Two rows x NT tokens (2-4: a batched decode step of several sequences, a short prompt): one
// chain per (row, token, part) over k in order as in the tiles below, so a token's result is the
// same as theirs; each activation load feeds both rows, and the rows stream from DRAM with
// decode's L2 prefetch. (The 4-row tiles have no prefetch, and g++ 12 keeps their accumulators
// in memory with two-part activations: at 2-4 tokens they ran at a third to a half of decode's
// bytes per second, below their arithmetic bound.)
template <int NT, bool S>
void rows2_tokens(const uint8_t* w0, const uint8_t* w1, const Tokens<NT, S>& x, int64_t K, float* out) {
  __m512 a[2][NT], a2[2][NT];
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) a[0][t] = a[1][t] = a2[0][t] = a2[1][t] = _mm512_setzero_ps();
  const __mmask32 all = 0xffffffffu;
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    for (int l = 0; l < 128; l += 64) {  // both 64-byte lines of each row's 128 bytes
      _mm_prefetch(reinterpret_cast<const char*>(w0 + 2 * k + l + kDecodePrefetch), _MM_HINT_T2);
      _mm_prefetch(reinterpret_cast<const char*>(w1 + 2 * k + l + kDecodePrefetch), _MM_HINT_T2);
    }
    rows2_step<NT, S>(a, a2, load_bh(all, w0 + 2 * k), load_bh(all, w1 + 2 * k), x, k, all);
    rows2_step<NT, S>(a, a2, load_bh(all, w0 + 2 * k + 64), load_bh(all, w1 + 2 * k + 64), x, k + 32, all);
  }
  for (; k < K; k += 32) {
    const __mmask32 m = tail_mask(k, K);
    rows2_step<NT, S>(a, a2, load_bh(m, w0 + 2 * k), load_bh(m, w1 + 2 * k), x, k, m);
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    out[t] = _mm512_reduce_add_ps(S ? _mm512_add_ps(a[0][t], a2[0][t]) : a[0][t]);
    out[NT + t] = _mm512_reduce_add_ps(S ? _mm512_add_ps(a[1][t], a2[1][t]) : a[1][t]);
  }
}

// One row x NT tokens, one chain per (token, part): the tiles' order, also for a last single
// token of a call with several (decode's one token goes through rows_decode instead).
template <int NT, bool S>
void row_tile(const uint8_t* w, const Tokens<NT, S>& x, int64_t K, float* out) {
  __m512 acc[NT], acc2[NT];
  for (int t = 0; t < NT; ++t) acc[t] = acc2[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 m = tail_mask(k, K);
    if (k % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + 2 * k + kPrefetch), _MM_HINT_T0);
    const __m512bh wv = load_bh(m, w + 2 * k);
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm512_dpbf16_ps(acc[t], wv, load_bh(m, x.x[t] + k));
      if constexpr (S) acc2[t] = _mm512_dpbf16_ps(acc2[t], wv, load_bh(m, x.x2[t] + k));
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(S ? _mm512_add_ps(acc[t], acc2[t]) : acc[t]);
}

// Prefill: 4 rows x NT tokens, so each activation load feeds 4 dot products.
template <int NT, bool S>
void rows4_tile(const uint8_t* w, size_t row_bytes, const Tokens<NT, S>& x, int64_t K, float* out) {
  __m512 acc[4][NT], acc2[4][NT];
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = acc2[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 m = tail_mask(k, K);
    __m512bh xv[NT], xv2[NT];
    for (int t = 0; t < NT; ++t) {
      xv[t] = load_bh(m, x.x[t] + k);
      if constexpr (S) xv2[t] = load_bh(m, x.x2[t] + k);
    }
    for (int r = 0; r < 4; ++r) {
      const __m512bh wv = load_bh(m, w + r * row_bytes + 2 * k);
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv, xv[t]);
        if constexpr (S) acc2[r][t] = _mm512_dpbf16_ps(acc2[r][t], wv, xv2[t]);
      }
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < NT; ++t)
      out[r * NT + t] = _mm512_reduce_add_ps(S ? _mm512_add_ps(acc[r][t], acc2[r][t]) : acc[r][t]);
}

// Many tokens: 4 rows x up to kGroup tokens, K in chunks of kChunk, so the rows' chunk (4 x 2 KB)
// stays in L1 while every token tile of the group passes over it (unchunked, the 4 rows of a
// 4096-wide o_proj fill L1 by themselves and each tile rereads them from L2). The accumulators
// wait in memory between chunks, and each still takes the k steps in order, so the results are
// identical to rows4_tile's. (rows4_tile is kept as a separate copy: written as a call of
// rows4_tile_acc over all of K, g++ 12 compiled rows4_group's instance at half the speed.)
constexpr int64_t kChunk = 1024, kGroup = 64;

template <int NT, bool S>
void rows4_tile_acc(const uint8_t* w, size_t row_bytes, const Tokens<NT, S>& x, int64_t k0, int64_t k1,
                    int64_t K, __m512* acc /* [4][NT] */, __m512* acc2 /* [4][NT], S only */) {
  __m512 a[4][NT], a2[4][NT];
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < NT; ++t) {
      a[r][t] = acc[r * NT + t];
      if constexpr (S) a2[r][t] = acc2[r * NT + t];
    }
  for (int64_t k = k0; k < k1; k += 32) {
    const __mmask32 m = tail_mask(k, K);
    __m512bh xv[NT], xv2[NT];
    for (int t = 0; t < NT; ++t) {
      xv[t] = load_bh(m, x.x[t] + k);
      if constexpr (S) xv2[t] = load_bh(m, x.x2[t] + k);
    }
    for (int r = 0; r < 4; ++r) {
      const __m512bh wv = load_bh(m, w + r * row_bytes + 2 * k);
      for (int t = 0; t < NT; ++t) {
        a[r][t] = _mm512_dpbf16_ps(a[r][t], wv, xv[t]);
        if constexpr (S) a2[r][t] = _mm512_dpbf16_ps(a2[r][t], wv, xv2[t]);
      }
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < NT; ++t) {
      acc[r * NT + t] = a[r][t];
      if constexpr (S) acc2[r * NT + t] = a2[r][t];
    }
}

// Token tiles: 4 wide with one part, 2 with two.
template <bool S>
constexpr int kTile = S ? 2 : 4;

// Rows r..r+3 x tokens [t0, t0 + n), n <= kGroup.
template <bool S>
void rows4_group(const Matrix& w, const Activations& x, int64_t r, int64_t t0, int64_t n, float* y, int64_t ldy) {
  constexpr int64_t tile = kTile<S>;
  __m512 acc[4 * kGroup], acc2[S ? 4 * kGroup : 1];  // tile-major: tile j at acc + 4 * tile * j
  for (int64_t i = 0; i < 4 * n; ++i) {
    acc[i] = _mm512_setzero_ps();
    if constexpr (S) acc2[i] = _mm512_setzero_ps();
  }
  const uint8_t* wr = w.data + size_t(r) * w.row_bytes;
  const int64_t K = w.cols;
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    const int64_t k1 = std::min(K, k0 + kChunk);
    for (int64_t t = 0; t < n; t += tile) {
      __m512* a = acc + 4 * t;
      __m512* a2 = S ? acc2 + 4 * t : nullptr;
      switch (std::min(tile, n - t)) {
        case 4: rows4_tile_acc<4, S>(wr, w.row_bytes, Tokens<4, S>(x, t0 + t, K), k0, k1, K, a, a2); break;
        case 3: rows4_tile_acc<3, S>(wr, w.row_bytes, Tokens<3, S>(x, t0 + t, K), k0, k1, K, a, a2); break;
        case 2: rows4_tile_acc<2, S>(wr, w.row_bytes, Tokens<2, S>(x, t0 + t, K), k0, k1, K, a, a2); break;
        default: rows4_tile_acc<1, S>(wr, w.row_bytes, Tokens<1, S>(x, t0 + t, K), k0, k1, K, a, a2); break;
      }
    }
  }
  for (int64_t t = 0; t < n; t += tile) {
    const int64_t nt = std::min(tile, n - t);
    for (int i = 0; i < 4; ++i)
      for (int64_t j = 0; j < nt; ++j) {
        const int64_t at = 4 * t + i * nt + j;
        y[(t0 + t + j) * ldy + r + i] = _mm512_reduce_add_ps(S ? _mm512_add_ps(acc[at], acc2[at]) : acc[at]);
      }
  }
}

template <int NT, bool S>
void run_rows4(const Matrix& w, const Activations& x, int64_t r, int64_t t0, float* y, int64_t ldy) {
  float out[4 * NT];
  rows4_tile<NT, S>(w.data + size_t(r) * w.row_bytes, w.row_bytes, Tokens<NT, S>(x, t0, w.cols), w.cols, out);
  for (int i = 0; i < 4; ++i)
    for (int t = 0; t < NT; ++t) y[(t0 + t) * ldy + r + i] = out[i * NT + t];
}

template <int NT, bool S>
void run_rows2(const Matrix& w, const Activations& x, int64_t r, int64_t t0, float* y, int64_t ldy) {
  float out[2 * NT];
  const uint8_t* w0 = w.data + size_t(r) * w.row_bytes;
  rows2_tokens<NT, S>(w0, w0 + w.row_bytes, Tokens<NT, S>(x, t0, w.cols), w.cols, out);
  for (int i = 0; i < 2; ++i)
    for (int t = 0; t < NT; ++t) y[(t0 + t) * ldy + r + i] = out[i * NT + t];
}

template <int NT, bool S>
void run_tile(const Matrix& w, const Activations& x, int64_t r, int64_t t0, float* y, int64_t ldy) {
  float out[NT];
  row_tile<NT, S>(w.data + size_t(r) * w.row_bytes, Tokens<NT, S>(x, t0, w.cols), w.cols, out);
  for (int t = 0; t < NT; ++t) y[(t0 + t) * ldy + r] = out[t];
}

// Below this many tokens rows go in pairs (rows2_tokens); from it, 4-row tiles.
constexpr int64_t kSmallT = 9;

template <bool S>
void run(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  constexpr int64_t tile = kTile<S>;
  int64_t r = r0;
  if (x.T >= 8 && w.cols > kChunk) {
    for (; r + 4 <= r1; r += 4)
      for (int64_t t = 0; t < x.T; t += kGroup) rows4_group<S>(w, x, r, t, std::min(kGroup, x.T - t), y, ldy);
  }
  if (x.T >= 2 && x.T < kSmallT) {  // rows in pairs, tokens 4 at a time
    for (; r + 2 <= r1; r += 2) {
      int64_t t = 0;
      for (; t + 4 <= x.T; t += 4) run_rows2<4, S>(w, x, r, t, y, ldy);
      switch (x.T - t) {
        case 3: run_rows2<3, S>(w, x, r, t, y, ldy); break;
        case 2: run_rows2<2, S>(w, x, r, t, y, ldy); break;
        case 1: run_rows2<1, S>(w, x, r, t, y, ldy); break;
        default: break;
      }
    }
  }
  if (x.T >= 4) {
    for (; r + 4 <= r1; r += 4) {
      int64_t t = 0;
      for (; t + tile <= x.T; t += tile) run_rows4<tile, S>(w, x, r, t, y, ldy);
      switch (x.T - t) {
        case 3: run_rows4<3, S>(w, x, r, t, y, ldy); break;
        case 2: run_rows4<2, S>(w, x, r, t, y, ldy); break;
        case 1: run_rows4<1, S>(w, x, r, t, y, ldy); break;
        default: break;
      }
    }
  }
  if (x.T == 1) {  // decode: rows in pairs (rows_decode), an odd last one alone
    const uint16_t* xr = x.xb + x.row(0) * w.cols;
    const uint16_t* xr2 = S ? x.xb2 + x.row(0) * w.cols : nullptr;
    for (; r + 2 <= r1; r += 2) {
      const uint8_t* wr[2] = {w.data + size_t(r) * w.row_bytes, w.data + size_t(r + 1) * w.row_bytes};
      rows_decode<2, S>(wr, xr, xr2, w.cols, y + r);
    }
  }
  for (; r < r1; ++r) {
    if (x.T == 1) {
      const uint8_t* wr = w.data + size_t(r) * w.row_bytes;
      rows_decode<1, S>(&wr, x.xb + x.row(0) * w.cols, S ? x.xb2 + x.row(0) * w.cols : nullptr, w.cols, y + r);
      continue;
    }
    int64_t t = 0;
    for (; t + tile <= x.T; t += tile) run_tile<tile, S>(w, x, r, t, y, ldy);
    switch (x.T - t) {
      case 3: run_tile<3, S>(w, x, r, t, y, ldy); break;
      case 2: run_tile<2, S>(w, x, r, t, y, ldy); break;
      case 1: run_tile<1, S>(w, x, r, t, y, ldy); break;
      default: break;
    }
  }
}

}  // namespace

void matmul_rows_bf16_avx512(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                             int64_t ldy) {
  if (x.xb2) return run<true>(w, x, r0, r1, y, ldy);
  run<false>(w, x, r0, r1, y, ldy);
}

}  // namespace mlxq::kernels::q8
