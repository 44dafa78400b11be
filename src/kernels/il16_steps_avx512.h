// Internal to the AVX-512 interleaved kernels (matmul_il16_avx512.cpp, matmul_il16_amx.cpp):
// cutting one step's codes out of a tile's code registers as interleaved.h places them. Include
// only from files compiled with the AVX-512 flags (F/BW/VL/VNNI/VBMI).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/interleaved.h"

namespace mlxq::kernels::q8::il16x {

#define MLXQ_INLINE __attribute__((always_inline)) inline
// The same for a lambda (written after its parameter list).
#define MLXQ_INLINE_LAMBDA __attribute__((always_inline))

// VPTERNLOGD immediates: (A & C) | B, and C ? A : B (bitwise select).
constexpr int ternlog_imm(int (*f)(int, int, int)) {
  int imm = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 2; ++c)
        if (f(a, b, c)) imm |= 1 << (a * 4 + b * 2 + c);
  return imm;
}
constexpr int kLowOrHigh = ternlog_imm([](int a, int b, int c) { return (a & c) | b; });
constexpr int kSelect = ternlog_imm([](int a, int b, int c) { return c ? a : b; });

// A 512-bit load the compiler cannot repeat or fold into the instructions that use it.
MLXQ_INLINE __m512i load_once(const uint8_t* p) {
  __m512i r;
  asm("vmovdqu64 %1, %0" : "=v"(r) : "m"(*reinterpret_cast<const char(*)[64]>(p)));
  return r;
}

// Byte masks the steps cut fields out with (the compiler drops those a width does not use).
struct Masks {
  __m512i b01 = _mm512_set1_epi8(0x01), b03 = _mm512_set1_epi8(0x03), b07 = _mm512_set1_epi8(0x07),
          b0f = _mm512_set1_epi8(0x0f), b1f = _mm512_set1_epi8(0x1f), b30 = _mm512_set1_epi8(0x30);
};

MLXQ_INLINE __m512i srl(__m512i v, int n) { return n ? _mm512_srli_epi32(v, unsigned(n)) : v; }
MLXQ_INLINE __m512i select(__m512i a, __m512i b, __m512i mask) { return _mm512_ternarylogic_epi32(a, b, mask, kSelect); }

// The code registers of one tile, loaded once (g++ would otherwise fold the load into every
// shift that uses it: 16 loads instead of 6 for 3 bits), and step M's codes cut out of them as
// interleaved.h places them.
template <int BITS>
struct TileRegs {
  static constexpr int nR = il16::code_regs(BITS);
  __m512i R[nR];
  MLXQ_INLINE explicit TileRegs(const uint8_t* t) {
    for (int i = 0; i < nR; ++i) R[i] = load_once(t + 64 * i);
  }
  // Codes 4M..4M+3 of the 16 rows (byte j of lane l: row l's code 4M + j).
  template <int M>
  MLXQ_INLINE __m512i step(const Masks& k) const {
    constexpr int s = M % 8;
    if constexpr (BITS == 8) {
      return R[M];
    } else if constexpr (BITS == 2 || BITS == 4) {
      constexpr int per = 8 / BITS;
      return _mm512_and_si512(srl(R[M / per], BITS * (M % per)), BITS == 2 ? k.b03 : k.b0f);
    } else if constexpr (BITS == 6) {  // 4-bit field | 2-bit high part moved to bits 4-5
      constexpr int up = 4 - 2 * (M % 4);
      __m512i hv = R[8 + M / 4];
      if constexpr (up > 0) hv = _mm512_slli_epi32(hv, up);
      if constexpr (up < 0) hv = _mm512_srli_epi32(hv, -up);
      return _mm512_ternarylogic_epi32(srl(R[M / 2], 4 * (M % 2)), _mm512_and_si512(hv, k.b30), k.b0f, kLowOrHigh);
    } else if constexpr (BITS == 3) {
      constexpr int r = 3 * (M / 8);
      if constexpr (s < 6) return _mm512_and_si512(srl(R[r + s / 2], 3 * (s % 2)), k.b07);
      // c6 / c7: 2 bits at the top of R0 / R1, the third at bit 6 / 7 of R2
      return _mm512_and_si512(select(srl(R[r + s - 6], 6), srl(R[r + 2], s - 2), k.b03), k.b07);
    } else {
      static_assert(BITS == 5);
      constexpr int r = 5 * (M / 8);
      if constexpr (s < 5) return _mm512_and_si512(R[r + s], k.b1f);
      // c5 (c6): bits 0-2 at the top of R0 (R2), bits 3-4 at R1 (R3) bits 5-6; q holds it at
      // bits 0-4 and c7's bit 0 (1) at bit 5.
      const auto q = [&](int i) { return select(srl(R[r + i], 5), srl(R[r + i + 1], 2), k.b07); };
      if constexpr (s < 7) return _mm512_and_si512(q(2 * (s - 5)), k.b1f);
      // c7: bits 0 and 1 from the two q, bits 2-4 at the top of R4
      const __m512i lo = select(srl(q(0), 5), srl(q(2), 4), k.b01);
      return _mm512_and_si512(select(lo, srl(R[r + 4], 3), k.b03), k.b1f);
    }
  }
};


// 16 bf16 values (scales or biases of a tile) as f32.
inline __m512 bf16x16(const uint8_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

}  // namespace mlxq::kernels::q8::il16x
