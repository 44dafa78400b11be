// The bf16 matmul kernel for dense bf16 weights on AMX (AMX-TILE + AMX-BF16), for 16 or more
// tokens (prefill). Compiled with those ISA flags and called only after amx_bf16 support and
// the tile-data permission are checked (matmul.cpp).
//
// TDPBF16PS multiplies a 16 x 32 bf16 tile by a 32 x 16 one (stored in pairs: row p holds
// elements 2p and 2p+1 of each of 16 columns) into a 16 x 16 f32 tile. The weights are the left
// operand straight from the checkpoint (16 rows x 32 columns, row stride = the weight row), the
// activations the right one in the pair layout ActivationBuffer::prepare makes for this kernel
// (Activations::xbt: 16 tokens per tile), so C[row][token] accumulates over the whole row and is
// written out once, transposed into y. Two-part activations (Fast) are two products into the same
// C. The sums are those of the AVX-512 bf16 kernel in another order (f32 rounding apart).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/matmul.h"
#include "kernels/amx_tiles.h"
#include "kernels/matmul_internal.h"

namespace mlxq::kernels::q8 {

namespace {

// Tiles (literal numbers: g++'s intrinsics paste them into register names): tmm0 = 16 weight
// rows x 32 columns; tmm1/tmm2 = the two activation parts of one 16-token tile; tmm4..tmm7 = the
// sums of up to 4 token tiles (16 rows x 16 tokens each).
template <int U, bool S>
inline void product(const uint16_t* b1, const uint16_t* b2) {
  _tile_loadd(1, b1, 64);
  if constexpr (S) _tile_loadd(2, b2, 64);
  if constexpr (U == 0) {
    _tile_dpbf16ps(4, 0, 1);
    if constexpr (S) _tile_dpbf16ps(4, 0, 2);
  } else if constexpr (U == 1) {
    _tile_dpbf16ps(5, 0, 1);
    if constexpr (S) _tile_dpbf16ps(5, 0, 2);
  } else if constexpr (U == 2) {
    _tile_dpbf16ps(6, 0, 1);
    if constexpr (S) _tile_dpbf16ps(6, 0, 2);
  } else {
    _tile_dpbf16ps(7, 0, 1);
    if constexpr (S) _tile_dpbf16ps(7, 0, 2);
  }
}

template <int U>
inline void store_sums(float* c) {
  if constexpr (U == 0) _tile_stored(4, c, 64);
  if constexpr (U == 1) _tile_stored(5, c, 64);
  if constexpr (U == 2) _tile_stored(6, c, 64);
  if constexpr (U == 3) _tile_stored(7, c, 64);
}

// 16 rows at w_rows against token tiles u0..u0+NU-1: sums over all of K, then written to y.
template <int NU, bool S>
void rows_tiles(const uint8_t* w_rows, size_t row_bytes, const Activations& x, int64_t u0, int64_t r, float* y,
                int64_t ldy) {
  const int64_t K = x.K, nk = K / 32;
  const size_t tile = size_t(nk) * 512;  // uint16 per token tile and part
  _tile_zero(4);
  if constexpr (NU > 1) _tile_zero(5);
  if constexpr (NU > 2) _tile_zero(6);
  if constexpr (NU > 3) _tile_zero(7);
  for (int64_t kc = 0; kc < nk; ++kc) {
    _tile_loadd(0, w_rows + 64 * kc, row_bytes);
    const size_t at = size_t(u0) * tile + size_t(kc) * 512;
    const uint16_t* b2 = S ? x.xbt2 : x.xbt;
    product<0, S>(x.xbt + at, b2 + at);
    if constexpr (NU > 1) product<1, S>(x.xbt + at + tile, b2 + at + tile);
    if constexpr (NU > 2) product<2, S>(x.xbt + at + 2 * tile, b2 + at + 2 * tile);
    if constexpr (NU > 3) product<3, S>(x.xbt + at + 3 * tile, b2 + at + 3 * tile);
  }
  alignas(64) float c[256];
  auto out = [&](int64_t u) {
    const int64_t live = std::min<int64_t>(16, x.T - 16 * (u0 + u));
    for (int64_t n = 0; n < live; ++n) {
      float* yr = y + (16 * (u0 + u) + n) * ldy + r;
      for (int m = 0; m < 16; ++m) yr[m] = c[16 * m + n];
    }
  };
  store_sums<0>(c);
  out(0);
  if constexpr (NU > 1) {
    store_sums<1>(c);
    out(1);
  }
  if constexpr (NU > 2) {
    store_sums<2>(c);
    out(2);
  }
  if constexpr (NU > 3) {
    store_sums<3>(c);
    out(3);
  }
}

template <bool S>
void run(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  configure_full_tiles();
  // Token tiles outer, rows inner: the activations of 4 token tiles (2 x 4 x K/32 KB) stay in L2
  // while the call's rows stream past them (rows outer re-read all activations, several MB at
  // pp512, from L3 for every 16 rows).
  const int64_t nu = (x.T + 15) / 16;
  for (int64_t u = 0; u < nu; u += 4)
    for (int64_t r = r0; r < r1; r += 16) {
      const uint8_t* wr = w.data + size_t(r) * w.row_bytes;
      switch (std::min<int64_t>(4, nu - u)) {
        case 4: rows_tiles<4, S>(wr, w.row_bytes, x, u, r, y, ldy); break;
        case 3: rows_tiles<3, S>(wr, w.row_bytes, x, u, r, y, ldy); break;
        case 2: rows_tiles<2, S>(wr, w.row_bytes, x, u, r, y, ldy); break;
        default: rows_tiles<1, S>(wr, w.row_bytes, x, u, r, y, ldy); break;
      }
    }
  _tile_release();
}

}  // namespace

void matmul_rows_bf16_amx(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (x.xbt2) return run<true>(w, x, r0, r1, y, ldy);
  run<false>(w, x, r0, r1, y, ldy);
}

}  // namespace mlxq::kernels::q8
