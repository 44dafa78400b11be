// The int8 kernel over the 16-row interleaved layout (interleaved.h) on AVX-512 VNNI. Compiled
// with the AVX-512 flags of matmul_q8_avx512.cpp and called only after the same CPUID check.
//
// One 32-bit lane is one row. For a tile (16 rows x one 64-code block) and one token, step m
// cuts codes 4m..4m+3 of all 16 rows out of the tile's code registers (a shift and an AND for a
// whole field; two shifts and a VPTERNLOGD select more for a code split over two registers'
// top bits) and meets the token's
// activation dword m with VPDPBUSD, the dword broadcast from memory ({1to16}). A lane ends the
// block with its row's whole int32 sum, so one convert and one FMA scale 16 rows, and the
// output is 16 contiguous floats: no horizontal sums. With two activation parts (Fast) each code
// register meets both, as in the row kernel (matmul_q8_avx512.cpp).
// Several tokens (prefill, routed experts) go through a group 4 at a time, each step's codes cut
// out once for the 4: that beat unpacking the group into the row kernel's token-lane tiles
// (pp512 +10-13%; 6 or 8 at a time run out of registers and were slower).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "kernels/il16_steps_avx512.h"
#include "kernels/interleaved.h"
#include "kernels/matmul_internal.h"

namespace mlxq::kernels::q8 {

namespace {

using namespace il16x;

// Software prefetch along a group's stream, 8 KB ahead into L2 (prefetcht1). Measured on Zen 4
// from DRAM, one core (docs/benchmarks.md): 2 KB into L1 gives the same 3-bit rate but a
// slower and noisier 5-bit one and 1-thread decode (7.4-7.6 vs 5.9-7.1 t/s); without software
// prefetch 5-bit falls to 12 GB/s.
constexpr int kIlPrefetch = 8192;

// VPDPBUSD with the activation dword broadcast from memory. Written out because g++ 12 emits a
// separate VPBROADCASTD for _mm512_set1_epi32(*x) (clang folds it).
inline __m512i dpbusd_bcst(__m512i acc, __m512i w, const int32_t* x) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*x));
  return acc;
}

// Where activation dword m of a block lies relative to the block's first one (matmul.h,
// q8_storage_index): blocks of a pair alternate dwords, 8 of each per 64 bytes.
template <bool Paired>
constexpr int dword_of(int m) {
  return Paired ? 16 * (m / 8) + 2 * (m % 8) : m;
}

// Steps M..15 of a tile: the codes of step M meet activation dword M of each part, into
// accumulator chain M % 4 of that part.
template <int BITS, bool Paired, bool S, int M>
MLXQ_INLINE void tile_steps(const TileRegs<BITS>& regs, const int32_t* x1, const int32_t* x2, const Masks& mk,
                            __m512i (&c1)[4], __m512i (&c2)[4]) {
  const __m512i w = regs.template step<M>(mk);
  c1[M % 4] = dpbusd_bcst(c1[M % 4], w, x1 + dword_of<Paired>(M));
  if constexpr (S) c2[M % 4] = dpbusd_bcst(c2[M % 4], w, x2 + dword_of<Paired>(M));
  if constexpr (M < 15) tile_steps<BITS, Paired, S, M + 1>(regs, x1, x2, mk, c1, c2);
}

// The int32 sums of one tile's 16 rows against one token (x1/x2: the block's first activation
// dword of each part), 4 accumulator chains per part.
template <int BITS, bool Paired, bool S>
MLXQ_INLINE __m512i tile_sums(const uint8_t* t, const int32_t* x1, const int32_t* x2, const Masks& mk) {
  const TileRegs<BITS> regs(t);
  __m512i c1[4], c2[4];
  for (int i = 0; i < 4; ++i) c1[i] = c2[i] = _mm512_setzero_si512();
  tile_steps<BITS, Paired, S, 0>(regs, x1, x2, mk, c1, c2);
  const __m512i s1 = _mm512_add_epi32(_mm512_add_epi32(c1[0], c1[1]), _mm512_add_epi32(c1[2], c1[3]));
  if constexpr (!S) return s1;
  const __m512i s2 = _mm512_add_epi32(_mm512_add_epi32(c2[0], c2[1]), _mm512_add_epi32(c2[2], c2[3]));
  return _mm512_add_epi32(_mm512_slli_epi32(s1, kQ8Shift), s2);
}

// One tile of the group against one token, added to acc (scale part) and accb (bias part).
template <int BITS, bool Paired, bool S>
MLXQ_INLINE void group_block(const uint8_t* t, const int32_t* x1, const int32_t* x2, float d, float s,
                             const Masks& mk, bool prefetch, __m512& acc, __m512& accb) {
  constexpr size_t kTile = il16::tile_bytes(BITS), kCodes = il16::code_bytes(BITS);
  if (prefetch)
    for (size_t l = 0; l < kTile; l += 64) _mm_prefetch(reinterpret_cast<const char*>(t + kIlPrefetch + l), _MM_HINT_T1);
  const __m512i isum = tile_sums<BITS, Paired, S>(t, x1, x2, mk);
  const __m512 cs = _mm512_mul_ps(bf16x16(t + kCodes), _mm512_set1_ps(d));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), cs, acc);
  accb = _mm512_fmadd_ps(bf16x16(t + kCodes + 32), _mm512_set1_ps(s), accb);
}

// One row group (its nb tiles at g) against one token: y[0..16) = the 16 rows' outputs.
template <int BITS, bool S>
void group_token(const uint8_t* g, int64_t nb, const int8_t* q, const int8_t* q2, const float* d, const float* s,
                 float* y, bool prefetch) {
  constexpr size_t kTile = il16::tile_bytes(BITS);
  const Masks mk;
  const int32_t* x1 = reinterpret_cast<const int32_t*>(q);
  const int32_t* x2 = S ? reinterpret_cast<const int32_t*>(q2) : x1;
  __m512 acc = _mm512_setzero_ps(), accb = _mm512_setzero_ps();
  const int64_t np = nb / 2;
  for (int64_t p = 0; p < np; ++p) {
    const uint8_t* t = g + size_t(2 * p) * kTile;
    group_block<BITS, true, S>(t, x1 + 32 * p, x2 + 32 * p, d[2 * p], s[2 * p], mk, prefetch, acc, accb);
    group_block<BITS, true, S>(t + kTile, x1 + 32 * p + 1, x2 + 32 * p + 1, d[2 * p + 1], s[2 * p + 1], mk, prefetch,
                               acc, accb);
  }
  if (nb % 2) {
    const int64_t b = nb - 1;
    group_block<BITS, false, S>(g + size_t(b) * kTile, x1 + 16 * b, x2 + 16 * b, d[b], s[b], mk, prefetch, acc, accb);
  }
  _mm512_storeu_ps(y, _mm512_add_ps(acc, accb));
}

// ---- Several tokens (2-4) per pass over a group: each step's codes meet every token ----

// Steps M..15 for NT tokens, one accumulator chain per (token, part): 2 * NT >= 4 chains.
template <int BITS, bool Paired, bool S, int NT, int M>
MLXQ_INLINE void tile_steps_nt(const TileRegs<BITS>& regs, const int32_t* const* x1, const int32_t* const* x2,
                               const Masks& mk, __m512i (&c1)[NT], __m512i (&c2)[NT]) {
  const __m512i w = regs.template step<M>(mk);
  for (int n = 0; n < NT; ++n) {
    c1[n] = dpbusd_bcst(c1[n], w, x1[n] + dword_of<Paired>(M));
    if constexpr (S) c2[n] = dpbusd_bcst(c2[n], w, x2[n] + dword_of<Paired>(M));
  }
  if constexpr (M < 15) tile_steps_nt<BITS, Paired, S, NT, M + 1>(regs, x1, x2, mk, c1, c2);
}

// One tile against NT tokens (x1[n]/x2[n]: token n's first activation dword of the block).
template <int BITS, bool Paired, bool S, int NT>
MLXQ_INLINE void group_block_nt(const uint8_t* t, const int32_t* const* x1, const int32_t* const* x2,
                                const float* d, const float* s, const Masks& mk, bool prefetch,
                                __m512 (&acc)[NT], __m512 (&accb)[NT]) {
  constexpr size_t kTile = il16::tile_bytes(BITS), kCodes = il16::code_bytes(BITS);
  if (prefetch)
    for (size_t l = 0; l < kTile; l += 64) _mm_prefetch(reinterpret_cast<const char*>(t + kIlPrefetch + l), _MM_HINT_T1);
  const TileRegs<BITS> regs(t);
  __m512i c1[NT], c2[NT];
  for (int n = 0; n < NT; ++n) c1[n] = c2[n] = _mm512_setzero_si512();
  tile_steps_nt<BITS, Paired, S, NT, 0>(regs, x1, x2, mk, c1, c2);
  const __m512 sc = bf16x16(t + kCodes), bi = bf16x16(t + kCodes + 32);
  for (int n = 0; n < NT; ++n) {
    const __m512i isum = S ? _mm512_add_epi32(_mm512_slli_epi32(c1[n], kQ8Shift), c2[n]) : c1[n];
    acc[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(sc, _mm512_set1_ps(d[n])), acc[n]);
    accb[n] = _mm512_fmadd_ps(bi, _mm512_set1_ps(s[n]), accb[n]);
  }
}

// One row group against tokens t0..t0+NT-1 of x: y[(t0 + n) * ldy + 0..16).
template <int BITS, bool S, int NT>
void group_tokens(const uint8_t* g, const Activations& x, int64_t t0, float* y, int64_t ldy, bool prefetch) {
  constexpr size_t kTile = il16::tile_bytes(BITS);
  const Masks mk;
  const int64_t K = x.K, nb = K / 64;
  const int32_t *q1[NT], *q2[NT], *x1[NT], *x2[NT];
  const float *dr[NT], *sr[NT];
  for (int n = 0; n < NT; ++n) {
    const int64_t row = x.row(t0 + n);
    q1[n] = reinterpret_cast<const int32_t*>(x.q + row * K);
    q2[n] = S ? reinterpret_cast<const int32_t*>(x.q2 + row * K) : q1[n];
    dr[n] = x.d + row * nb;
    sr[n] = x.s + row * nb;
  }
  __m512 acc[NT], accb[NT];
  for (int n = 0; n < NT; ++n) acc[n] = accb[n] = _mm512_setzero_ps();
  float d[NT], s[NT];
  auto block = [&]<bool Paired>(int64_t b, int64_t first_dword) MLXQ_INLINE_LAMBDA {
    for (int n = 0; n < NT; ++n) {
      x1[n] = q1[n] + first_dword;
      x2[n] = q2[n] + first_dword;
      d[n] = dr[n][b];
      s[n] = sr[n][b];
    }
    group_block_nt<BITS, Paired, S, NT>(g + size_t(b) * kTile, x1, x2, d, s, mk, prefetch, acc, accb);
  };
  for (int64_t p = 0; p < nb / 2; ++p) {
    block.template operator()<true>(2 * p, 32 * p);
    block.template operator()<true>(2 * p + 1, 32 * p + 1);
  }
  if (nb % 2) block.template operator()<false>(nb - 1, 16 * (nb - 1));
  for (int n = 0; n < NT; ++n) _mm512_storeu_ps(y + (t0 + n) * ldy, _mm512_add_ps(acc[n], accb[n]));
}

template <int BITS, bool S>
void run(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t K = w.cols, nb = K / 64;
  const size_t gb = w.il_group_bytes();
  for (int64_t r = r0; r < r1; r += 16) {
    const uint8_t* g = w.il + size_t(r / 16) * gb;
    // Token t alone, with four accumulator chains per part (decode, or a last odd token).
    auto one = [&](int64_t t) {
      const int64_t row = x.row(t);
      group_token<BITS, S>(g, nb, x.q + row * K, S ? x.q2 + row * K : nullptr, x.d + row * nb, x.s + row * nb,
                           y + t * ldy + r, t == 0);
    };
    if (x.T == 1) {
      one(0);
      continue;
    }
    // Several tokens: 4 at a time (then 3 or 2), so each step's codes are cut out once per 4.
    int64_t t = 0;
    for (; x.T - t >= 4; t += 4) group_tokens<BITS, S, 4>(g, x, t, y + r, ldy, t == 0);
    switch (x.T - t) {
      case 3: group_tokens<BITS, S, 3>(g, x, t, y + r, ldy, t == 0); break;
      case 2: group_tokens<BITS, S, 2>(g, x, t, y + r, ldy, t == 0); break;
      case 1: one(t); break;
      default: break;
    }
  }
}

template <bool S>
void run_bits(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  dispatch_bits(AllBitWidths{}, w.spec.bits, "il16-avx512", [&](auto B) { run<B, S>(w, x, r0, r1, y, ldy); });
}

}  // namespace

void matmul_rows_il16_avx512(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                             int64_t ldy) {
  if (x.q2) return run_bits<true>(w, x, r0, r1, y, ldy);
  run_bits<false>(w, x, r0, r1, y, ldy);
}

}  // namespace mlxq::kernels::q8
