// Internal: small AVX-512 helpers shared by the int8 kernels (matmul_q8_avx512.cpp,
// matmul_il16_avx512.cpp). Include only from files compiled with AVX-512 F/BW/VL flags.
#pragma once
#include <immintrin.h>

namespace mlxq::kernels::q8 {

// r[i] holds dwords 0..15 of row i; afterwards r[j] holds dword j of rows 0..15 (lane i = row i).
inline void transpose16(__m512i* r) {
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

// Paired order (q8_storage_index): dword j of a block goes to dword 16*(j/8) + 2*(j%8) + (b%2)
// of the pair; written with plain stores once both blocks are in registers (masked stores are
// slow on Zen 4).
inline void store_pair(__m512i even, __m512i odd, int8_t* base) {
  const __m512i idx_lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i idx_hi = _mm512_add_epi32(idx_lo, _mm512_set1_epi32(8));
  _mm512_storeu_si512(base, _mm512_mask_blend_epi32(__mmask16(0xAAAA), _mm512_permutexvar_epi32(idx_lo, even),
                                                    _mm512_permutexvar_epi32(idx_lo, odd)));
  _mm512_storeu_si512(base + 64, _mm512_mask_blend_epi32(__mmask16(0xAAAA), _mm512_permutexvar_epi32(idx_hi, even),
                                                         _mm512_permutexvar_epi32(idx_hi, odd)));
}

}  // namespace mlxq::kernels::q8
