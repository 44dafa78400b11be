// The int8 matmul kernel for MLX-affine weights on AVX-512 (F/BW/VL + VNNI + VBMI). This file is
// compiled with those ISA flags and only called after a CPUID check (matmul.cpp).
//
// For one 64-weight block of a row and one token: codes q (0..2^b-1, unsigned) and int8
// activations xq with scale d and sum S = d * sum(xq). The block contributes
//     scale * d * sum(q * xq) + bias * S
// sum(q * xq) comes from VPDPBUSD (u8 x s8 -> 16 int32 lanes), kept in lanes and scaled in f32,
// so there is one horizontal sum per row. Blocks go in pairs (PairUnpacker): VPERMB gathers the
// bytes of each 4-code window (8 codes sit in b bytes of the LSB-first stream), VPMULTISHIFTQB
// cuts the codes out, and the two blocks' codes alternate every 4 so one convert + FMA scales
// both. The activations are stored in the same order (matmul.h, q8_storage_index).
// Two-part activations (Fast precision, x = d (256 q1 + q2)): each code register meets q1, the
// int32 sums are shifted left by 8 and then meet q2, so one convert + FMA still scales the pair
// (a lane sums 8 products per part: below 2^27 for 8-bit codes).
// Decode runs one row at a time (one memory stream per thread; short rows 4 at a time, with the
// scales converted in the same pass); prefill runs tiles of 4 rows x up to 4 tokens over codes
// unpacked once per row group.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 flags the self-initialised "undefined" vectors inside its own AVX-512 headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "kernels/matmul_internal.h"
#include "kernels/matmul.h"

namespace mlxq::kernels::q8 {

namespace {

// Software prefetch distance along each row stream (a little faster than the hardware
// prefetchers alone on Zen 4; 2 KB beat 4 KB by 3-5% in 26b-a4b decode, 1 KB was no better).
// A VBMI2 expand-load instead of load+VPERMB was 3x slower there.
constexpr int kPrefetch = 2048;
constexpr int64_t kParamsAhead = 4;  // row groups

template <int B>
struct Unpacker {
  __m512i perm, shift, mask;
  Unpacker() {
    alignas(64) uint8_t p[64], s[64];
    for (int j = 0; j < 8; ++j)
      for (int i = 0; i < 8; ++i) {
        p[8 * j + i] = uint8_t(j * B + i);
        s[8 * j + i] = uint8_t(i * B);
      }
    perm = _mm512_load_si512(p);
    shift = _mm512_load_si512(s);
    mask = _mm512_set1_epi8(char((1 << B) - 1));
  }
  // Codes of the 64 weights stored in the 8*B bytes at p.
  __m512i operator()(const uint8_t* p) const {
    if constexpr (B == 8) {
      return _mm512_loadu_si512(p);
    } else {
      const __m512i raw = _mm512_maskz_loadu_epi8(__mmask64((uint64_t(1) << (8 * B)) - 1), p);
      const __m512i v = _mm512_multishift_epi64_epi8(shift, _mm512_permutexvar_epi8(perm, raw));
      return _mm512_and_si512(v, mask);
    }
  }
};

// Codes of two consecutive 64-weight blocks A, B (16*B bytes at p) in the paired order of
// matmul.h (q8_storage_index): register lo holds codes 0..31 and hi codes 32..63 of both blocks,
// A and B alternating every 4 codes, so one VPDPBUSD pair leaves A's sums in the even int32
// lanes and B's in the odd ones. Qword k of lo takes 4 bytes of A from byte 4kB/8 and 4 of B
// from 8B + 4kB/8 (one VPERMB, or VPERMT2B when 16B > 64), then VPMULTISHIFTQB cuts each code
// from its bit offset; hi is the same 4B bytes further on.
template <int B>
struct PairUnpacker {
  // B <= 4: four codes of one block fit in 2 bytes, so one VPERMB gathers all four windows a
  // qword needs (A lo, B lo, A hi, B hi) and two VPMULTISHIFTQB cut lo and hi from it: one
  // byte shuffle fewer per pair (the shuffle unit bounds this kernel on Zen 4).
  static constexpr bool kOnePerm = B <= 4;
  __m512i perm_lo, perm_hi, shift, shift_hi, mask;
  PairUnpacker() {
    alignas(64) uint8_t lo[64], hi[64], s[64], sh[64];
    if constexpr (kOnePerm) {
      for (int k = 0; k < 8; ++k) {
        const int a0 = 4 * k * B / 8, off = 4 * k * B % 8;
        for (int i = 0; i < 2; ++i) {
          lo[8 * k + i] = uint8_t(a0 + i);
          lo[8 * k + 2 + i] = uint8_t(8 * B + a0 + i);
          lo[8 * k + 4 + i] = uint8_t(4 * B + a0 + i);
          lo[8 * k + 6 + i] = uint8_t(12 * B + a0 + i);
        }
        for (int i = 0; i < 4; ++i) {
          s[8 * k + i] = uint8_t(off + i * B);
          s[8 * k + 4 + i] = uint8_t(16 + off + i * B);
          sh[8 * k + i] = uint8_t(32 + off + i * B);
          sh[8 * k + 4 + i] = uint8_t(48 + off + i * B);
        }
      }
      perm_lo = perm_hi = _mm512_load_si512(lo);
      shift = _mm512_load_si512(s);
      shift_hi = _mm512_load_si512(sh);
      mask = _mm512_set1_epi8(char((1 << B) - 1));
      return;
    }
    for (int k = 0; k < 8; ++k) {
      const int a0 = 4 * k * B / 8, off = 4 * k * B % 8;
      for (int i = 0; i < 4; ++i) {
        lo[8 * k + i] = uint8_t(a0 + i);
        lo[8 * k + 4 + i] = uint8_t(8 * B + a0 + i);
        hi[8 * k + i] = uint8_t(4 * B + a0 + i);
        hi[8 * k + 4 + i] = uint8_t(12 * B + a0 + i);
        s[8 * k + i] = uint8_t(off + i * B);
        s[8 * k + 4 + i] = uint8_t(32 + off + i * B);
      }
    }
    if constexpr (B == 5) {  // hi's windows all lie in bytes 16..79: one-source VPERMB on p + 16
      for (int i = 0; i < 64; ++i) hi[i] = uint8_t(hi[i] >= 16 ? std::min(hi[i] - 16, 63) : 0);
    }
    perm_lo = _mm512_load_si512(lo);
    perm_hi = _mm512_load_si512(hi);
    shift = shift_hi = _mm512_load_si512(s);
    mask = _mm512_set1_epi8(char((1 << B) - 1));
  }
  void operator()(const uint8_t* p, __m512i* lo, __m512i* hi) const {
    if constexpr (kOnePerm) {
      const __m512i raw = _mm512_maskz_loadu_epi8(__mmask64(~uint64_t(0) >> (64 - 16 * B)), p);
      const __m512i win = _mm512_permutexvar_epi8(perm_lo, raw);
      *lo = _mm512_and_si512(_mm512_multishift_epi64_epi8(shift, win), mask);
      *hi = _mm512_and_si512(_mm512_multishift_epi64_epi8(shift_hi, win), mask);
    } else if constexpr (B == 5) {
      // lo's windows lie in bytes 0..63, hi's in 16..79 (the last byte of each 4-byte window that
      // would fall outside is never read by the shift): two one-source VPERMB, no VPERMT2B.
      const __m512i r0 = _mm512_loadu_si512(p), r1 = _mm512_loadu_si512(p + 16);
      *lo = _mm512_and_si512(_mm512_multishift_epi64_epi8(shift, _mm512_permutexvar_epi8(perm_lo, r0)), mask);
      *hi = _mm512_and_si512(_mm512_multishift_epi64_epi8(shift, _mm512_permutexvar_epi8(perm_hi, r1)), mask);
    } else if constexpr (16 * B <= 64) {
      const __m512i raw = _mm512_maskz_loadu_epi8(__mmask64(~uint64_t(0) >> (64 - 16 * B)), p);
      *lo = _mm512_and_si512(_mm512_multishift_epi64_epi8(shift, _mm512_permutexvar_epi8(perm_lo, raw)), mask);
      *hi = _mm512_and_si512(_mm512_multishift_epi64_epi8(shift, _mm512_permutexvar_epi8(perm_hi, raw)), mask);
    } else {
      const __m512i r0 = _mm512_loadu_si512(p);
      const __m512i r1 = _mm512_maskz_loadu_epi8(__mmask64(~uint64_t(0) >> (128 - 16 * B)), p + 64);
      *lo = _mm512_and_si512(_mm512_multishift_epi64_epi8(shift, _mm512_permutex2var_epi8(r0, perm_lo, r1)), mask);
      *hi = _mm512_and_si512(_mm512_multishift_epi64_epi8(shift, _mm512_permutex2var_epi8(r0, perm_hi, r1)), mask);
    }
  }
};

// Lanes of the first n of 16 bf16 values at p, as f32 (lanes past n are 0).
inline __m512 load_bf16x16(__mmask16 m, const uint8_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// Per-64-block scale and bias of one row, as f32 (group_size 64 or 128).
void block_params(const Matrix& w, const uint8_t* sc, const uint8_t* bi, float* s_out,
                  float* b_out) {
  const int64_t per = w.spec.group_size / 64;  // blocks per group
  const int64_t ng = w.cols / 64 / per;
  if (w.dtype == DType::BF16 && per == 1) {
    // Whole chunks of 16 with plain stores (s_out and b_out hold kMaxBlocks; lanes past ng get
    // 0): masked stores cost 16% of a hot 3-bit matvec on Zen 4.
    for (int64_t g = 0; g < ng; g += 16) {
      const __mmask16 m = first_lanes(ng - g);
      _mm512_store_ps(s_out + g, load_bf16x16(m, sc + 2 * g));
      _mm512_store_ps(b_out + g, load_bf16x16(m, bi + 2 * g));
    }
    return;
  }
  for (int64_t g = 0; g < ng; ++g) {
    float s, b;
    switch (w.dtype) {
      case DType::BF16: s = bf16_to_f32(load_u16(sc + 2 * g)); b = bf16_to_f32(load_u16(bi + 2 * g)); break;
      case DType::F16: s = f16_to_f32(load_u16(sc + 2 * g)); b = f16_to_f32(load_u16(bi + 2 * g)); break;
      default: s = load_f32(sc + 4 * g); b = load_f32(bi + 4 * g); break;
    }
    for (int64_t j = 0; j < per; ++j) {
      s_out[g * per + j] = s;
      b_out[g * per + j] = b;
    }
  }
}

// sum_i a[i] * b[i] over n floats.
float dot(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// out[i] = a[i] * b[i] for i < n, in whole chunks of 16: out must have room for n rounded up to
// 16 (the lanes past n get 0). Plain stores only: a masked or narrower store right before the
// tile's broadcast loads costs a store-forwarding stall, and masked stores are slow on Zen 4.
void mul(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first_lanes(n - i);
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

// R rows x NT tokens. w[r]: packed row r; xq[t]: int8 row of token t (paired layout);
// cs[(r*NT+t)*ldc + b]: combined scale of block b; y[r*NT+t] receives the scale part (the bias
// part is added by the caller). Blocks go in pairs (one cvt + FMA per pair); an odd last block
// is stored unpaired and takes the single-block path.
// kBuf: w[r] points at codes already unpacked (by unpack_rows) instead of packed weights.
// S: two-part activations, xq2[t] the second part.
template <int B, int R, int NT, bool kBuf, bool S>
void tile(const uint8_t* const* w, const int8_t* const* xq, const int8_t* const* xq2, const float* cs,
          int64_t ldc, int64_t nb, float* y) {
  static const PairUnpacker<B> unpack2s;
  static const Unpacker<B> unpack1;
  const PairUnpacker<B> unpack2 = unpack2s;  // a local copy, so the tables stay in registers
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512();
  const int64_t np = nb / 2;
  for (int64_t p = 0; p < np; ++p) {
    __m512i xlo[NT], xhi[NT], ylo[NT], yhi[NT];
    for (int t = 0; t < NT; ++t) {
      xlo[t] = _mm512_loadu_si512(xq[t] + 128 * p);
      xhi[t] = _mm512_loadu_si512(xq[t] + 128 * p + 64);
      if constexpr (S) {
        ylo[t] = _mm512_loadu_si512(xq2[t] + 128 * p);
        yhi[t] = _mm512_loadu_si512(xq2[t] + 128 * p + 64);
      }
    }
    for (int r = 0; r < R; ++r) {
      __m512i lo, hi;
      if constexpr (kBuf) {
        lo = _mm512_loadu_si512(w[r] + 128 * p);
        hi = _mm512_loadu_si512(w[r] + 128 * p + 64);
      } else {
        if constexpr (kPrefetch > 0) {  // a pair spans 16*B bytes: touch every 64-byte line ahead
          _mm_prefetch(reinterpret_cast<const char*>(w[r] + 16 * B * p + kPrefetch), _MM_HINT_T0);
          if constexpr (16 * B > 64) _mm_prefetch(reinterpret_cast<const char*>(w[r] + 16 * B * p + kPrefetch + 64), _MM_HINT_T0);
        }
        unpack2(w[r] + 16 * B * p, &lo, &hi);
      }
      for (int t = 0; t < NT; ++t) {
        __m512i isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xlo[t]), hi, xhi[t]);
        if constexpr (S)
          isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_slli_epi32(isum, kQ8Shift), lo, ylo[t]), hi, yhi[t]);
        // lanes alternate A, B: scale by [cs_A, cs_B] repeated
        const __m512 sc = _mm512_castsi512_ps(_mm512_broadcastq_epi64(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(cs + (r * NT + t) * ldc + 2 * p))));
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), sc, acc[r][t]);
      }
    }
  }
  if (nb % 2) {
    const int64_t b = nb - 1;
    __m512i xv[NT], yv[NT];
    for (int t = 0; t < NT; ++t) {
      xv[t] = _mm512_loadu_si512(xq[t] + 64 * b);
      if constexpr (S) yv[t] = _mm512_loadu_si512(xq2[t] + 64 * b);
    }
    for (int r = 0; r < R; ++r) {
      const __m512i wv = kBuf ? _mm512_loadu_si512(w[r] + 64 * b) : unpack1(w[r] + 8 * B * b);
      for (int t = 0; t < NT; ++t) {
        __m512i i32 = _mm512_dpbusd_epi32(zero, wv, xv[t]);
        if constexpr (S) i32 = _mm512_dpbusd_epi32(_mm512_slli_epi32(i32, kQ8Shift), wv, yv[t]);
        const __m512 isum = _mm512_cvtepi32_ps(i32);
        acc[r][t] = _mm512_fmadd_ps(isum, _mm512_set1_ps(cs[(r * NT + t) * ldc + b]), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) y[r * NT + t] = _mm512_reduce_add_ps(acc[r][t]);
}

// Scales and biases of R rows, per 64-block, in f32.
template <int R>
struct RowBlocks {
  alignas(64) float s[R][kMaxBlocks];
  alignas(64) float b[R][kMaxBlocks];
};

// Codes of rows r..r+R-1 in the activations' paired order, K bytes per row (for prefill, where
// every token tile would otherwise unpack the same rows again).
template <int B, int R>
void unpack_rows(const Matrix& w, int64_t r, uint8_t* codes) {
  static const PairUnpacker<B> unpack2s;
  static const Unpacker<B> unpack1;
  const PairUnpacker<B> unpack2 = unpack2s;  // a local copy, so the tables stay in registers
  const int64_t nb = w.cols / 64, np = nb / 2;
  for (int i = 0; i < R; ++i) {
    const uint8_t* src = w.data + size_t(r + i) * w.row_bytes;
    uint8_t* dst = codes + i * w.cols;
    for (int64_t p = 0; p < np; ++p) {
      __m512i lo, hi;
      unpack2(src + 16 * B * p, &lo, &hi);
      _mm512_storeu_si512(dst + 128 * p, lo);
      _mm512_storeu_si512(dst + 128 * p + 64, hi);
    }
    if (nb % 2) _mm512_storeu_si512(dst + 64 * (nb - 1), unpack1(src + 8 * B * (nb - 1)));
  }
}

template <int B, int R, int NT, bool S, bool kBuf = false>
void run_tile(const Matrix& w, const Activations& x, const RowBlocks<R>& rb, int64_t r, int64_t t0,
              float* y, int64_t ldy, const uint8_t* codes = nullptr) {
  const int64_t nb = w.cols / 64;
  // Rows of cs are whole 16-float chunks (ldc >= nb): written with plain stores only.
  const int64_t ldc = (nb + 15) / 16 * 16;
  alignas(64) float cs[R * NT * kMaxBlocks];
  const uint8_t* wrow[R];
  const int8_t* xrow[NT];
  const int8_t* xrow2[NT];
  for (int t = 0; t < NT; ++t) {
    xrow[t] = x.q + x.row(t0 + t) * nb * 64;
    xrow2[t] = S ? x.q2 + x.row(t0 + t) * nb * 64 : nullptr;
  }
  for (int i = 0; i < R; ++i) {
    wrow[i] = kBuf ? codes + i * w.cols : w.data + size_t(r + i) * w.row_bytes;
    for (int t = 0; t < NT; ++t) mul(rb.s[i], x.d + x.row(t0 + t) * nb, nb, cs + (i * NT + t) * ldc);
  }
  float out[R * NT];
  tile<B, R, NT, kBuf, S>(wrow, xrow, xrow2, cs, ldc, nb, out);
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < NT; ++t)
      y[(t0 + t) * ldy + r + i] = out[i * NT + t] + dot(rb.b[i], x.s + x.row(t0 + t) * nb, nb);
}

// Decode of R rows with bf16 scales and biases, one per block: converts them straight into
// the combined scales (scale * d) and the bias terms (sum of bias * s) in one pass, instead of
// block_params + mul + dot over stored f32 copies.
template <int B, int R, bool S>
void run_rows_bf16(const Matrix& w, const Activations& x, int64_t r, float* y) {
  const int64_t nb = w.cols / 64;
  const int64_t ldc = (nb + 15) / 16 * 16;
  const float* d = x.d + x.row(0) * nb;
  const float* sx = x.s + x.row(0) * nb;
  alignas(64) float cs[R * kMaxBlocks];
  __m512 bias[R];
  const uint8_t* wrow[R];
  for (int i = 0; i < R; ++i) {
    const uint8_t* sc = w.scales + size_t(r + i) * w.sb_row_bytes;
    const uint8_t* bi = w.biases + size_t(r + i) * w.sb_row_bytes;
    bias[i] = _mm512_setzero_ps();
    for (int64_t g = 0; g < nb; g += 16) {
      const __mmask16 m = first_lanes(nb - g);
      _mm512_store_ps(cs + i * ldc + g, _mm512_mul_ps(load_bf16x16(m, sc + 2 * g), _mm512_maskz_loadu_ps(m, d + g)));
      bias[i] = _mm512_fmadd_ps(load_bf16x16(m, bi + 2 * g), _mm512_maskz_loadu_ps(m, sx + g), bias[i]);
    }
    wrow[i] = w.data + size_t(r + i) * w.row_bytes;
  }
  const int8_t* xrow = x.q + x.row(0) * nb * 64;
  const int8_t* xrow2 = S ? x.q2 + x.row(0) * nb * 64 : nullptr;
  float out[R];
  tile<B, R, 1, false, S>(wrow, &xrow, &xrow2, cs, ldc, nb, out);
  for (int i = 0; i < R; ++i) y[r + i] = out[i] + _mm512_reduce_add_ps(bias[i]);  // token 0's row of y
}

template <int B, int R, bool S>
void run_rows(const Matrix& w, const Activations& x, int64_t r, float* y, int64_t ldy) {
  if (x.T == 1 && w.dtype == DType::BF16 && w.spec.group_size == 64) return run_rows_bf16<B, R, S>(w, x, r, y);
  RowBlocks<R> rb;
  for (int i = 0; i < R; ++i)
    block_params(w, w.scales + size_t(r + i) * w.sb_row_bytes, w.biases + size_t(r + i) * w.sb_row_bytes,
                 rb.s[i], rb.b[i]);
  int64_t t = 0;
  if (x.T > 4) {  // several token tiles: unpack the rows once
    alignas(64) uint8_t codes[R * 64 * kMaxBlocks];
    unpack_rows<B, R>(w, r, codes);
    for (; t + 4 <= x.T; t += 4) run_tile<B, R, 4, S, true>(w, x, rb, r, t, y, ldy, codes);
    switch (x.T - t) {
      case 3: run_tile<B, R, 3, S, true>(w, x, rb, r, t, y, ldy, codes); break;
      case 2: run_tile<B, R, 2, S, true>(w, x, rb, r, t, y, ldy, codes); break;
      case 1: run_tile<B, R, 1, S, true>(w, x, rb, r, t, y, ldy, codes); break;
      default: break;
    }
    return;
  }
  for (; t + 4 <= x.T; t += 4) run_tile<B, R, 4, S>(w, x, rb, r, t, y, ldy);
  switch (x.T - t) {
    case 3: run_tile<B, R, 3, S>(w, x, rb, r, t, y, ldy); break;
    case 2: run_tile<B, R, 2, S>(w, x, rb, r, t, y, ldy); break;
    case 1: run_tile<B, R, 1, S>(w, x, rb, r, t, y, ldy); break;
    default: break;
  }
}

// Scales and biases are small separate streams read at the start of each row group; fetching
// them a few groups ahead keeps the tile from waiting on them.
void prefetch_params(const Matrix& w, int64_t r, int64_t r1) {
  if (r >= r1) return;
  const size_t off = size_t(r) * w.sb_row_bytes, len = size_t(std::min<int64_t>(4, r1 - r)) * w.sb_row_bytes;
  for (size_t i = 0; i < len; i += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(w.scales + off + i), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w.biases + off + i), _MM_HINT_T0);
  }
}

// ---- Token lanes: prefill with at least kLaneTokens tokens ----
// The block-pair tiles above spend one convert + FMA per 2 blocks of one (row, token): half their
// issue slots go to scaling, not to VPDPBUSD. Here the 16 lanes are 16 tokens instead: one
// weight dword (4 codes) is broadcast to every lane and meets dword m of 16 tokens'
// activations, so an int32 lane sums one whole block of one token and one convert + FMA scales
// 16 (token, block) sums. The activations of a chunk of up to kLaneChunk tokens are transposed
// once per call (16 x 16 dword transposes) into a thread-local buffer that stays in L2; the
// codes come from unpack_rows as before. In the paired order dword m belongs to block
// 2 * (m / 32) + m % 2, so a pair's even dwords are block A and its odd ones block B.
constexpr int64_t kLaneTokens = 16, kLaneChunk = 64;

// r[i] holds dwords 0..15 of row i; afterwards r[j] holds dword j of rows 0..15 (lane i = row i).
void transpose16(__m512i* r) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: a0 b0 a1 b1 | a2 b2 a3 b3
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // rows i..i+3, dword 4L+k of lane L in u[i+k]
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int k = 0; k < 4; ++k) {  // gather lane L of u[k], u[4+k], u[8+k], u[12+k] -> dword 4L+k
    const __m512i s0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44), s1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
    const __m512i s2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44), s3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
    r[k] = _mm512_shuffle_i32x4(s0, s2, 0x88);
    r[4 + k] = _mm512_shuffle_i32x4(s0, s2, 0xDD);
    r[8 + k] = _mm512_shuffle_i32x4(s1, s3, 0x88);
    r[12 + k] = _mm512_shuffle_i32x4(s1, s3, 0xDD);
  }
}

// The int8 activations of tokens [t0, t0 + nt) in lanes: q[m * ntv + v] holds dword m of tokens
// t0 + 16v .. t0 + 16v + 15 (lanes past nt are 0), d and s the blocks' scales and sums likewise.
struct alignas(64) Lane64 {
  int8_t b[64];
};
struct Lanes {
  int64_t ntv = 0;
  std::vector<Lane64> q, q2;
  std::vector<float> d, s;  // [nb][ntv][16]
  void build(const Activations& x, int64_t t0, int64_t nt, int64_t K) {
    const int64_t nb = K / 64, nd = K / 4;
    ntv = (nt + 15) / 16;
    if (q.size() < size_t(nd * ntv)) q.resize(size_t(nd * ntv));
    if (x.q2 && q2.size() < size_t(nd * ntv)) q2.resize(size_t(nd * ntv));
    if (d.size() < size_t(nb * ntv * 16)) {
      d.resize(size_t(nb * ntv * 16));
      s.resize(d.size());
    }
    for (int64_t v = 0; v < ntv; ++v) {
      const int64_t n = std::min<int64_t>(16, nt - 16 * v);
      int64_t row[16];
      for (int64_t i = 0; i < n; ++i) row[i] = x.row(t0 + 16 * v + i);
      for (const int8_t* src : {x.q, x.q2}) {
        if (!src) continue;
        Lane64* dst = src == x.q ? q.data() : q2.data();
        for (int64_t c = 0; c < nd / 16; ++c) {
          __m512i r[16];
          for (int64_t i = 0; i < 16; ++i)
            r[i] = i < n ? _mm512_loadu_si512(src + row[i] * K + 64 * c) : _mm512_setzero_si512();
          transpose16(r);
          for (int j = 0; j < 16; ++j) _mm512_store_si512(dst + (16 * c + j) * ntv + v, r[j]);
        }
      }
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t i = 0; i < 16; ++i) {
          d[size_t((b * ntv + v) * 16 + i)] = i < n ? x.d[row[i] * nb + b] : 0.0f;
          s[size_t((b * ntv + v) * 16 + i)] = i < n ? x.s[row[i] * nb + b] : 0.0f;
        }
    }
  }
};

// The int32 sums of R rows x NV token vectors over the dwords m = m0, m0 + step, ... (16 of them)
// of one part (q: [m][ntv] from vector v0), accumulated into ia.
template <int R, int NV>
inline void lane_dots(const uint8_t* const* codes, const Lane64* q, int64_t ntv, int64_t v0, int64_t m0,
                      int64_t step, __m512i (&ia)[R][NV]) {
  for (int j = 0; j < 16; ++j) {
    const int64_t m = m0 + step * j;
    __m512i xv[NV];
    for (int v = 0; v < NV; ++v) xv[v] = _mm512_load_si512(q + m * ntv + v0 + v);
    for (int r = 0; r < R; ++r) {
      int32_t w4;
      std::memcpy(&w4, codes[r] + 4 * m, 4);
      const __m512i wv = _mm512_set1_epi32(w4);
      for (int v = 0; v < NV; ++v) ia[r][v] = _mm512_dpbusd_epi32(ia[r][v], wv, xv[v]);
    }
  }
}

// acc[r][v] += (block b's sums) * scale_w * d + bias_w * s, for the 16 tokens of vector v0 + v.
template <int R, int NV, bool S>
inline void lane_block(const uint8_t* const* codes, const Lanes& L, int64_t v0, int64_t m0, int64_t step,
                       int64_t b, const RowBlocks<R>& rb, __m512 (&acc)[R][NV]) {
  __m512i ia[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) ia[r][v] = _mm512_setzero_si512();
  lane_dots<R, NV>(codes, L.q.data(), L.ntv, v0, m0, step, ia);
  if constexpr (S) {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) ia[r][v] = _mm512_slli_epi32(ia[r][v], kQ8Shift);
    lane_dots<R, NV>(codes, L.q2.data(), L.ntv, v0, m0, step, ia);
  }
  for (int v = 0; v < NV; ++v) {
    const __m512 d = _mm512_loadu_ps(&L.d[size_t((b * L.ntv + v0 + v) * 16)]);
    const __m512 s = _mm512_loadu_ps(&L.s[size_t((b * L.ntv + v0 + v) * 16)]);
    for (int r = 0; r < R; ++r) {
      const __m512 cs = _mm512_mul_ps(d, _mm512_set1_ps(rb.s[r][b]));
      acc[r][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][v]), cs, acc[r][v]);
      acc[r][v] = _mm512_fmadd_ps(s, _mm512_set1_ps(rb.b[r][b]), acc[r][v]);
    }
  }
}

// R rows (codes in the paired order) x NV token vectors from v0: out[(r * NV + v) * 16 + lane].
template <int R, int NV, bool S>
void lane_tile(const uint8_t* const* codes, int64_t K, const Lanes& L, int64_t v0, const RowBlocks<R>& rb,
               float* out) {
  const int64_t nb = K / 64, np = nb / 2;
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < np; ++p) {
    lane_block<R, NV, S>(codes, L, v0, 32 * p, 2, 2 * p, rb, acc);          // block A: even dwords
    lane_block<R, NV, S>(codes, L, v0, 32 * p + 1, 2, 2 * p + 1, rb, acc);  // block B: odd dwords
  }
  if (nb % 2) lane_block<R, NV, S>(codes, L, v0, 32 * np, 1, nb - 1, rb, acc);  // unpaired: natural order
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out + (r * NV + v) * 16, acc[r][v]);
}

template <int B, int R, bool S>
void lane_rows(const Matrix& w, const Lanes& L, int64_t t0, int64_t nt, int64_t r, float* y, int64_t ldy) {
  RowBlocks<R> rb;
  for (int i = 0; i < R; ++i)
    block_params(w, w.scales + size_t(r + i) * w.sb_row_bytes, w.biases + size_t(r + i) * w.sb_row_bytes,
                 rb.s[i], rb.b[i]);
  alignas(64) uint8_t codes[R * 64 * kMaxBlocks];
  unpack_rows<B, R>(w, r, codes);
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = codes + i * w.cols;
  alignas(64) float out[R * 2 * 16];
  for (int64_t v = 0; v < L.ntv; v += 2) {
    const int nv = L.ntv - v >= 2 ? 2 : 1;
    if (nv == 2) lane_tile<R, 2, S>(rows, w.cols, L, v, rb, out);
    else lane_tile<R, 1, S>(rows, w.cols, L, v, rb, out);
    for (int i = 0; i < R; ++i)
      for (int u = 0; u < nv; ++u)
        for (int64_t l = 0; l < 16 && 16 * (v + u) + l < nt; ++l)
          y[(t0 + 16 * (v + u) + l) * ldy + r + i] = out[(i * nv + u) * 16 + l];
  }
}

template <int B, bool S>
void run_lanes(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  thread_local Lanes lanes;
  for (int64_t t0 = 0; t0 < x.T; t0 += kLaneChunk) {
    const int64_t nt = std::min(kLaneChunk, x.T - t0);
    lanes.build(x, t0, nt, w.cols);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) lane_rows<B, 4, S>(w, lanes, t0, nt, r, y, ldy);
    for (; r < r1; ++r) lane_rows<B, 1, S>(w, lanes, t0, nt, r, y, ldy);
  }
}

template <int B, bool S>
void run(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  int64_t r = r0;
  if (x.T >= kLaneTokens) return run_lanes<B, S>(w, x, r0, r1, y, ldy);
  for (int64_t g = 0; g < kParamsAhead; ++g) prefetch_params(w, r0 + 4 * g, r1);
  // Few tokens (decode): one row at a time. A single sequential stream is what the hardware
  // prefetchers follow best (3-bit matvec from DRAM: 15 GB/s per core vs 9 with 4 interleaved
  // rows). Many tokens (prefill): 4-row tiles share each activation load.
  // Short rows (K <= 1024, e.g. the experts' down_proj) also take 4 at a time: their per-row setup
  // would otherwise cost as much as the row itself, and 4 short rows are one contiguous run.
  if (x.T >= 4 || w.cols <= 1024) {
    for (; r + 4 <= r1; r += 4) {
      prefetch_params(w, r + 4 * kParamsAhead, r1);
      run_rows<B, 4, S>(w, x, r, y, ldy);
    }
  }
  for (; r < r1; ++r) {
    if ((r - r0) % 4 == 0) prefetch_params(w, r + 4 * kParamsAhead, r1);
    run_rows<B, 1, S>(w, x, r, y, ldy);
  }
}

// Paired order (q8_storage_index): dword j of a block goes to dword 16*(j/8) + 2*(j%8) + (b%2)
// of the pair; written with plain stores once both blocks are in registers (masked stores are
// slow on Zen 4).
void store_pair(__m512i even, __m512i odd, int8_t* base) {
  const __m512i idx_lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i idx_hi = _mm512_add_epi32(idx_lo, _mm512_set1_epi32(8));
  _mm512_storeu_si512(base, _mm512_mask_blend_epi32(__mmask16(0xAAAA), _mm512_permutexvar_epi32(idx_lo, even),
                                                    _mm512_permutexvar_epi32(idx_lo, odd)));
  _mm512_storeu_si512(base + 64, _mm512_mask_blend_epi32(__mmask16(0xAAAA), _mm512_permutexvar_epi32(idx_hi, even),
                                                         _mm512_permutexvar_epi32(idx_hi, odd)));
}

inline __m512i bytes_of(const __m128i* b) {  // 4 x 16 bytes, natural order
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(b[1], b[0])), _mm256_set_m128i(b[3], b[2]), 1);
}

template <bool S>
void run_bits(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  dispatch_bits(AllBitWidths{}, w.spec.bits, "q8-avx512", [&](auto B) { run<B, S>(w, x, r0, r1, y, ldy); });
}

}  // namespace

void quantize_row_avx512(const float* x, int64_t K, int8_t* q, float* d, float* s, int8_t* q2) {
  const int64_t nb = K / 64, paired = K / 128 * 2;
  const __m512 kpart = _mm512_set1_ps(float(1 << kQ8Shift));
  __m512i even = _mm512_setzero_si512(), even2 = _mm512_setzero_si512();  // the pair's even block
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + 64 * b;
    __m512 v[4];
    __m512 amax = _mm512_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm512_loadu_ps(xb + 16 * j);
      amax = _mm512_max_ps(amax, _mm512_abs_ps(v[j]));
    }
    const float db = _mm512_reduce_max_ps(amax) / 127.0f;
    const __m512 id = _mm512_set1_ps(db > 0 ? 1.0f / db : 0.0f);
    __m512i sum = _mm512_setzero_si512();
    __m128i bytes[4], bytes2[4];
    for (int j = 0; j < 4; ++j) {  // round to nearest even, as std::nearbyint
      const __m512 t = _mm512_mul_ps(v[j], id);
      const __m512i iv = _mm512_cvtps_epi32(t);
      bytes[j] = _mm512_cvtsepi32_epi8(iv);
      if (q2) {
        // an exact half gives +256: saturate to 127 like the scalar definition
        const __m512i iv2 = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(t, _mm512_cvtepi32_ps(iv)), kpart)),
                                             _mm512_set1_epi32(127));
        bytes2[j] = _mm512_cvtsepi32_epi8(iv2);
        sum = _mm512_add_epi32(sum, _mm512_add_epi32(_mm512_slli_epi32(iv, kQ8Shift), iv2));
      } else {
        sum = _mm512_add_epi32(sum, iv);
      }
    }
    const __m512i codes = bytes_of(bytes);  // 64 codes as 16 dwords (4 codes each)
    const __m512i codes2 = q2 ? bytes_of(bytes2) : _mm512_setzero_si512();
    d[b] = q2 ? db * (1.0f / float(1 << kQ8Shift)) : db;
    s[b] = d[b] * float(_mm512_reduce_add_epi32(sum));
    if (b >= paired) {
      _mm512_storeu_si512(q + 64 * b, codes);
      if (q2) _mm512_storeu_si512(q2 + 64 * b, codes2);
      continue;
    }
    if (b % 2 == 0) {
      even = codes;
      even2 = codes2;
      continue;
    }
    store_pair(even, codes, q + 128 * (b / 2));
    if (q2) store_pair(even2, codes2, q2 + 128 * (b / 2));
  }
}

void matmul_rows_avx512(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                        int64_t ldy) {
  if (x.q2) return run_bits<true>(w, x, r0, r1, y, ldy);
  run_bits<false>(w, x, r0, r1, y, ldy);
}

}  // namespace mlxq::kernels::q8
