// The int8 matmul kernel for MLX-affine weights on AVX2 + FMA, for x86 CPUs without AVX-512
// VNNI/VBMI (compiled with those flags, called only after a CPUID check in matmul.cpp). It takes
// the same activations as the AVX-512 kernel (int8 in the paired block order of
// q8_storage_index) and computes the same sums, for codes of 2 to 6 bits (8-bit codes overflow
// VPMADDUBSW's int16 pairs; those matrices use the f32 kernel).
//
// Unpacking: each 8-code window of a block is `bits` bytes of the LSB-first stream, loaded as 8
// bytes. A 128-bit lane holds two windows; a byte shuffle (VPSHUFB) puts the 2 bytes holding
// each code into a 16-bit lane, a multiply by 2^(8 - bit offset) lifts the code to bits 8.., a
// shift by 8 brings it down, and VPACKUSWB + a mask leave one code per byte. The tables pick 4
// codes of block A, then 4 of block B, so the bytes come out in the paired order directly.
// Dot: VPMADDUBSW (u8 codes x s8 activations, pairs summed to int16), two of them added (no
// overflow for codes < 64), VPMADDWD with ones to int32: block A's sums in the even lanes and
// B's in the odd ones, so one convert + FMA (scales [sA, sB] repeated) serves the pair.
// Two-part activations (Fast precision): the int32 sums against q1 are shifted left by 8 and the
// sums against q2 (int8 like q1: no int16 overflow either) added before the convert.
// A row is unpacked once into an L1 buffer, then dotted with up to 4 tokens at a time.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"
#include "quant/affine.h"

namespace mlxq::kernels::q8 {

namespace {

// Codes of one 256-bit source (lane 0: windows w0 | w1, lane 1: w2 | w3, 8 bytes each) as 32
// bytes. Paired: lane 0 gives A0-3 B0-3 A4-7 B4-7 (w0 = A, w1 = B), lane 1 the same for w2/w3.
// Natural: lane 0 gives w0's 8 codes then w1's, lane 1 w2's then w3's.
template <int B>
struct Unpacker {
  __m256i tx, ty, mx, my, mask;
  explicit Unpacker(bool paired) {
    alignas(32) uint8_t tbx[32], tby[32];
    alignas(32) int16_t fx[16], fy[16];
    for (int lane = 0; lane < 2; ++lane)
      for (int i = 0; i < 8; ++i) {  // 16-bit lane i of X and of Y
        // (window base byte, code index j within the window)
        const int xw = paired ? (i < 4 ? 0 : 8) : 0, xj = paired ? i % 4 : i;
        const int yw = paired ? (i < 4 ? 0 : 8) : 8, yj = paired ? 4 + i % 4 : i;
        const int k = 16 * lane + 2 * i;
        tbx[k] = uint8_t(xw + xj * B / 8);
        tbx[k + 1] = uint8_t(xw + xj * B / 8 + 1);
        tby[k] = uint8_t(yw + yj * B / 8);
        tby[k + 1] = uint8_t(yw + yj * B / 8 + 1);
        fx[8 * lane + i] = int16_t(1 << (8 - xj * B % 8));
        fy[8 * lane + i] = int16_t(1 << (8 - yj * B % 8));
      }
    tx = _mm256_load_si256(reinterpret_cast<const __m256i*>(tbx));
    ty = _mm256_load_si256(reinterpret_cast<const __m256i*>(tby));
    mx = _mm256_load_si256(reinterpret_cast<const __m256i*>(fx));
    my = _mm256_load_si256(reinterpret_cast<const __m256i*>(fy));
    mask = _mm256_set1_epi8(char((1 << B) - 1));
  }
  __m256i operator()(__m256i src) const {
    const __m256i x = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(src, tx), mx), 8);
    const __m256i y = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(src, ty), my), 8);
    return _mm256_and_si256(_mm256_packus_epi16(x, y), mask);
  }
};

inline int64_t load8(const uint8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline __m256i windows(const uint8_t* w0, const uint8_t* w1, const uint8_t* w2, const uint8_t* w3) {
  return _mm256_set_epi64x(load8(w3), load8(w2), load8(w1), load8(w0));
}

// Codes of one packed row (nb 64-code blocks) into dst, K bytes in the paired order. Every
// 8-byte window load reads up to 8 - B bytes past its window, so the row's last pair or block
// is unpacked from a zero-padded copy (never past the row's end).
template <int B>
void unpack_row(const uint8_t* src, int64_t nb, uint8_t* dst) {
  static const Unpacker<B> paired(true), natural(false);
  const int64_t np = nb / 2;
  alignas(32) uint8_t tail[16 * B + 8];
  for (int64_t p = 0; p < np; ++p) {
    const uint8_t* a = src + 16 * B * p;
    if (p == np - 1 && nb % 2 == 0) {  // last pair of the row
      std::memset(tail, 0, sizeof(tail));
      std::memcpy(tail, a, 16 * B);
      a = tail;
    }
    const uint8_t* b = a + 8 * B;
    for (int c = 0; c < 4; ++c)  // codes 16c .. 16c+15 of both blocks
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 128 * p + 32 * c),
                          paired(windows(a + 2 * c * B, b + 2 * c * B, a + (2 * c + 1) * B, b + (2 * c + 1) * B)));
  }
  if (nb % 2) {  // an odd last block, in natural order
    std::memset(tail, 0, sizeof(tail));
    std::memcpy(tail, src + 16 * B * np, 8 * B);
    for (int c = 0; c < 2; ++c)  // codes 32c .. 32c+31
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 128 * np + 32 * c),
                          natural(windows(tail + 4 * c * B, tail + (4 * c + 1) * B, tail + (4 * c + 2) * B,
                                          tail + (4 * c + 3) * B)));
  }
}

inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// sum(codes * xq) of 32-byte chunks c0 and c1 against x0 and x1, as 8 int32 lanes.
inline __m256i dot64(__m256i c0, __m256i c1, const int8_t* x) {
  const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(c0, load(x)), _mm256_maddubs_epi16(c1, load(x + 32)));
  return _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
}

// NT tokens against one unpacked row: y[t] = sum over blocks of cs[t][b] * sum(q * xq), where
// with S xq is the two-part value 256 * xq + xq2.
template <int NT, bool S>
void dot_tokens(const uint8_t* codes, const int8_t* const* xq, const int8_t* const* xq2, const float* const* cs,
                int64_t nb, float* y) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const int64_t np = nb / 2;
  for (int64_t p = 0; p < np; ++p) {
    const __m256i c0 = load(codes + 128 * p), c1 = load(codes + 128 * p + 32);
    const __m256i c2 = load(codes + 128 * p + 64), c3 = load(codes + 128 * p + 96);
    for (int t = 0; t < NT; ++t) {
      __m256i i32 = _mm256_add_epi32(dot64(c0, c1, xq[t] + 128 * p), dot64(c2, c3, xq[t] + 128 * p + 64));
      if constexpr (S)
        i32 = _mm256_add_epi32(_mm256_slli_epi32(i32, kQ8Shift), _mm256_add_epi32(dot64(c0, c1, xq2[t] + 128 * p),
                                                                           dot64(c2, c3, xq2[t] + 128 * p + 64)));
      double pair;  // [cs_A, cs_B], repeated over the lanes
      std::memcpy(&pair, cs[t] + 2 * p, 8);
      const __m256 sc = _mm256_castpd_ps(_mm256_set1_pd(pair));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), sc, acc[t]);
    }
  }
  if (nb % 2) {
    const __m256i c0 = load(codes + 128 * np), c1 = load(codes + 128 * np + 32);
    for (int t = 0; t < NT; ++t) {
      __m256i i32 = dot64(c0, c1, xq[t] + 128 * np);
      if constexpr (S) i32 = _mm256_add_epi32(_mm256_slli_epi32(i32, kQ8Shift), dot64(c0, c1, xq2[t] + 128 * np));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_set1_ps(cs[t][nb - 1]), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) y[t] = hsum(acc[t]);
}

// Per-64-block scale and bias of one row as f32 (groups of 64 or 128; bf16 groups of 64, the
// common case, 8 at a time).
void block_params(const Matrix& w, int64_t r, int64_t nb, float* s, float* b) {
  const uint8_t* sc = w.scales + size_t(r) * w.sb_row_bytes;
  const uint8_t* bi = w.biases + size_t(r) * w.sb_row_bytes;
  const int64_t per = w.spec.group_size / 64;
  int64_t k = 0;
  if (w.dtype == DType::BF16 && per == 1)
    for (; k + 8 <= nb; k += 8) {
      const __m128i s16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + 2 * k));
      const __m128i b16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bi + 2 * k));
      _mm256_storeu_ps(s + k, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(s16), 16)));
      _mm256_storeu_ps(b + k, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b16), 16)));
    }
  for (; k < nb; ++k) {
    s[k] = quant::load_scalar(sc, w.dtype, k / per);
    b[k] = quant::load_scalar(bi, w.dtype, k / per);
  }
}

template <int B, bool S>
void run(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t nb = w.cols / 64;
  alignas(32) uint8_t codes[64 * kMaxBlocks];
  alignas(32) float s[kMaxBlocks], b[kMaxBlocks], cs[4][kMaxBlocks];
  for (int64_t r = r0; r < r1; ++r) {
    block_params(w, r, nb, s, b);
    unpack_row<B>(w.data + size_t(r) * w.row_bytes, nb, codes);
    for (int64_t t0 = 0; t0 < x.T; t0 += 4) {
      const int nt = int(x.T - t0 < 4 ? x.T - t0 : 4);
      const int8_t* xq[4];
      const int8_t* xq2[4] = {};
      const float* csp[4] = {cs[0], cs[1], cs[2], cs[3]};
      float out[4];
      for (int t = 0; t < nt; ++t) {
        const int64_t row = x.row(t0 + t);
        xq[t] = x.q + row * w.cols;
        if (S) xq2[t] = x.q2 + row * w.cols;
        const float* d = x.d + row * nb;
        for (int64_t k = 0; k < nb; ++k) cs[t][k] = s[k] * d[k];
      }
      switch (nt) {
        case 4: dot_tokens<4, S>(codes, xq, xq2, csp, nb, out); break;
        case 3: dot_tokens<3, S>(codes, xq, xq2, csp, nb, out); break;
        case 2: dot_tokens<2, S>(codes, xq, xq2, csp, nb, out); break;
        default: dot_tokens<1, S>(codes, xq, xq2, csp, nb, out); break;
      }
      for (int t = 0; t < nt; ++t) {  // + the bias term: sum over blocks of bias * (d * sum(xq))
        const float* sum = x.s + x.row(t0 + t) * nb;
        __m256 acc = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= nb; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(b + k), _mm256_loadu_ps(sum + k), acc);
        float bias = hsum(acc);
        for (; k < nb; ++k) bias += b[k] * sum[k];
        y[(t0 + t) * ldy + r] = out[t] + bias;
      }
    }
  }
}

template <bool S>
void run_bits(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  dispatch_bits(BitWidths<2, 3, 4, 5, 6>{}, w.spec.bits, "q8-avx2", [&](auto B) { run<B, S>(w, x, r0, r1, y, ldy); });
}

}  // namespace

void matmul_rows_avx2(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (x.q2) return run_bits<true>(w, x, r0, r1, y, ldy);
  run_bits<false>(w, x, r0, r1, y, ldy);
}

}  // namespace mlxq::kernels::q8
