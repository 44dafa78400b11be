// The int8 kernel over the 16-row interleaved layout (interleaved.h) on AMX (AMX-TILE +
// AMX-INT8, Intel Sapphire Rapids and later), for several tokens (prefill, routed experts).
// Compiled with the AVX-512 flags plus -mamx-tile -mamx-int8 and called only after
// amx_kernel_supported() (CPUID and Linux's permission to use tile data, matmul.cpp).
//
// A tile of the layout (16 rows x one 64-code block) gives, step by step, exactly what TDPBSUD
// takes as its B operand: step m's register holds codes 4m..4m+3 of the 16 rows, one row per
// dword, which is the VNNI layout of a 64 x 16 matrix of unsigned bytes. So the 16 steps are cut
// out of the code registers as in the AVX-512 kernel (il16_steps_avx512.h), stored as one 1 KB
// tile, and meet 16 tokens' activations of that block (A: 16 rows of 64 signed bytes, one token
// per row) in one instruction: C[token][row] = the block's int32 sum. Two activation parts
// (Fast) take a tile row each: A holds 8 tokens, rows 2n and 2n+1 token n's two parts, and C's
// rows 2n and 2n+1 their sums. Each block's sums are then scaled on AVX-512 as the AVX-512
// kernel does (a convert and FMA for the scales, an FMA for the biases, per token, 16 rows at a
// time), into one accumulator per token held in a register: the same floats up to f32 rounding.
//
// The activations' int8 rows are kept in the order the row kernel reads (matmul.h, pairs of
// blocks with alternating dwords); a call first copies the tokens it serves into natural order
// (a tile row is 64 contiguous bytes), padded with zero tokens to a multiple of 16.
// Measured on a 2-core Sapphire-Rapids-class VM (docs/benchmarks.md): tile instructions run in
// order, a tile store takes about as long as a product (16 rows, one per cycle), and a store
// right behind its product waits for it; hence the pipeline in group_tile().
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/aligned.h"
#include "kernels/il16_steps_avx512.h"
#include "kernels/interleaved.h"
#include "kernels/amx_tiles.h"
#include "kernels/matmul_internal.h"

namespace mlxq::kernels::q8 {

namespace {

using namespace il16x;

// Tiles: all eight full (configure_full_tiles); literal numbers, since g++'s intrinsics paste
// them into the register names; which holds what: see products().

// Everything a call needs besides the weights, owned per thread and grown once.
struct Scratch {
  // Row (P * t + part) * K: token t's part in natural order (P = 2 parts with Fast, else 1);
  // tokens T..Tp-1 (Tp = T rounded up to 16) are zero.
  std::vector<int8_t> a;
  std::vector<float> d, s;  // [Tp][nb]
  AlignedVector<uint8_t> codes;  // one row group's B tiles, 1 KB per block
  // What the copy holds: the same rows of the same prepare() call need no new copy (a task's
  // rows come in several parts, each a call).
  uint64_t generation = 0;
  const int8_t* q = nullptr;
  const int32_t* idx = nullptr;
  int64_t T = -1;
  void prepare(const Activations& x) {
    if (x.generation != 0 && x.generation == generation && x.q == q && x.idx == idx && x.T == T) return;
    generation = x.generation;
    q = x.q;
    idx = x.idx;
    T = x.T;
    const int64_t K = x.K, nb = K / 64, Tp = (x.T + 15) / 16 * 16, P = x.q2 ? 2 : 1;
    if (codes.size() < size_t(1024 * nb)) codes.resize(size_t(1024 * nb));
    if (a.size() < size_t(P * Tp * K)) a.resize(size_t(P * Tp * K));
    if (d.size() < size_t(Tp * nb)) {
      d.resize(size_t(Tp * nb));
      s.resize(size_t(Tp * nb));
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    auto natural = [&](const int8_t* src, int8_t* dst) {
      for (int64_t p = 0; p < nb / 2; ++p) {
        const __m512i lo = _mm512_loadu_si512(src + 128 * p), hi = _mm512_loadu_si512(src + 128 * p + 64);
        _mm512_storeu_si512(dst + 128 * p, _mm512_permutex2var_epi32(lo, even, hi));
        _mm512_storeu_si512(dst + 128 * p + 64, _mm512_permutex2var_epi32(lo, odd, hi));
      }
      if (nb % 2) std::memcpy(dst + 64 * (nb - 1), src + 64 * (nb - 1), 64);
    };
    for (int64_t t = 0; t < Tp; ++t) {
      int8_t* at = &a[size_t(P * t * K)];
      if (t >= x.T) {
        std::memset(at, 0, size_t(P * K));
        std::fill_n(&d[size_t(t * nb)], nb, 0.0f);
        std::fill_n(&s[size_t(t * nb)], nb, 0.0f);
        continue;
      }
      const int64_t row = x.row(t);
      natural(x.q + row * K, at);
      if (x.q2) natural(x.q2 + row * K, at + K);
      std::copy_n(x.d + row * nb, nb, &d[size_t(t * nb)]);
      std::copy_n(x.s + row * nb, nb, &s[size_t(t * nb)]);
    }
  }
};

// Block b's products for one token tile: its codes in tmm0 (b even) or tmm1 (b odd), the tile's
// A rows (16 tokens, or 8 tokens x 2 parts twice with Fast) in tmm2/tmm3, sums into tmm4/tmm5 (b
// even) or tmm6/tmm7 (b odd). The sums are stored one block later (store_sums), after the next
// block's products are issued: tile instructions run in order, and a store right behind its
// product would wait for it.
template <int Odd, int U>
MLXQ_INLINE void products(const int8_t* a, int64_t K) {
  if constexpr (Odd == 0) {
    _tile_zero(4);
    _tile_loadd(2, a, K);
    _tile_dpbsud(4, 2, 0);
    if constexpr (U == 2) {
      _tile_zero(5);
      _tile_loadd(3, a + 16 * K, K);
      _tile_dpbsud(5, 3, 0);
    }
  } else {
    _tile_zero(6);
    _tile_loadd(2, a, K);
    _tile_dpbsud(6, 2, 1);
    if constexpr (U == 2) {
      _tile_zero(7);
      _tile_loadd(3, a + 16 * K, K);
      _tile_dpbsud(7, 3, 1);
    }
  }
}

// Stores the sums of an even (Odd = 0) or odd block to c (16 ints per A row). U: A tiles per
// token tile (2 with Fast and more than 8 tokens, else 1).
template <int Odd, int U>
MLXQ_INLINE void store_sums(int32_t* c) {
  if constexpr (Odd == 0) {
    _tile_stored(4, c, 64);
    if constexpr (U == 2) _tile_stored(5, c + 256, 64);
  } else {
    _tile_stored(6, c, 64);
    if constexpr (U == 2) _tile_stored(7, c + 256, 64);
  }
}

// Tokens N..15 of the tile: block sums (token n's parts in rows 2n and 2n+1 of c with Fast, row
// n without) scaled into acc[n] as the AVX-512 kernel does, its scale and bias parts into one
// accumulator.
template <bool S, int N>
MLXQ_INLINE void scale_sums(const int32_t* c, __m512 scale, __m512 bias, const float* d, const float* s, int64_t nb,
                            int64_t live, __m512 (&acc)[16]) {
  if (N >= live) return;
  const __m512i s1 = _mm512_load_si512(c + (S ? 32 : 16) * N);
  const __m512i isum = S ? _mm512_add_epi32(_mm512_slli_epi32(s1, kQ8Shift), _mm512_load_si512(c + 32 * N + 16)) : s1;
  acc[N] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(scale, _mm512_set1_ps(d[N * nb])), acc[N]);
  acc[N] = _mm512_fmadd_ps(bias, _mm512_set1_ps(s[N * nb]), acc[N]);
  if constexpr (N < 15) scale_sums<S, N + 1>(c, scale, bias, d, s, nb, live, acc);
}

// Stores steps M..15 of a tile's codes as rows M..15 of a B tile (64 bytes each).
template <int BITS, int M>
MLXQ_INLINE void store_steps(const TileRegs<BITS>& regs, const Masks& mk, uint8_t* b) {
  _mm512_store_si512(b + 64 * M, regs.template step<M>(mk));
  if constexpr (M < 15) store_steps<BITS, M + 1>(regs, mk, b);
}

// One row group (its tiles at g, their codes already cut out as B tiles at `codes`, 1 KB per
// block) against one token tile (16 tokens from a_tile, d, s): a software pipeline over the
// blocks, block b's products issued before block b-1's sums are stored and block b-3's scaled,
// so neither a tile store nor the scaling waits for a product just issued. The 16 accumulators
// stay in registers.
template <int BITS, bool S, int U>
MLXQ_INLINE void group_tile(const uint8_t* g, const uint8_t* codes, int64_t nb, const int8_t* a_tile, int64_t K,
                            const float* d, const float* s, int64_t live, float* y, int64_t ldy) {
  constexpr size_t kTile = il16::tile_bytes(BITS), kCodes = il16::code_bytes(BITS);
  constexpr int64_t P = S ? 2 : 1;
  // Block b's sums are stored in iteration b+1 and scaled in iteration b+kLag, from buffer
  // b % kBuffers (written again in iteration b+kBuffers+1, after that).
  constexpr int64_t kLag = 3, kBuffers = 4;
  alignas(64) int32_t c[kBuffers][P * 256];
  __m512 acc[16];
  for (int n = 0; n < 16; ++n) acc[n] = _mm512_setzero_ps();
  auto scale = [&](int64_t b, const int32_t* cb) {
    const uint8_t* sb = g + size_t(b) * kTile + kCodes;
    scale_sums<S, 0>(cb, bf16x16(sb), bf16x16(sb + 32), d + b, s + b, nb, live, acc);
  };
  // A tile rows come from L2 (a token tile's activations are 16-32 rows of K bytes): fetched
  // into L1 two blocks ahead, a tile load takes about half as long.
  auto prefetch_a = [&](int64_t b) {
    if (b < nb)
      for (int64_t i = 0; i < 16 * U; ++i) _mm_prefetch(reinterpret_cast<const char*>(a_tile + i * K + 64 * b), _MM_HINT_T0);
  };
  for (int64_t b = 0; b < nb + kLag; ++b) {
    if (b < nb) {
      prefetch_a(b + 2);
      if (b % 2 == 0) {
        _tile_loadd(0, codes + 1024 * b, 64);
        products<0, U>(a_tile + 64 * b, K);
      } else {
        _tile_loadd(1, codes + 1024 * b, 64);
        products<1, U>(a_tile + 64 * b, K);
      }
    }
    if (b >= 1 && b <= nb) {
      if ((b - 1) % 2 == 0) {
        store_sums<0, U>(c[(b - 1) % kBuffers]);
      } else {
        store_sums<1, U>(c[(b - 1) % kBuffers]);
      }
    }
    if (b >= kLag) scale(b - kLag, c[(b - kLag) % kBuffers]);
  }
  for (int64_t n = 0; n < live; ++n) _mm512_storeu_ps(y + n * ldy, acc[n]);
}

template <int BITS, bool S>
void run(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t K = w.cols, nb = K / 64, T = x.T, Tp = (T + 15) / 16 * 16;
  constexpr int64_t P = S ? 2 : 1;
  const size_t gb = w.il_group_bytes();
  thread_local Scratch sc;
  sc.prepare(x);
  configure_full_tiles();
  constexpr size_t kTile = il16::tile_bytes(BITS);
  const Masks mk;
  for (int64_t r = r0; r < r1; r += 16) {
    const uint8_t* g = w.il + size_t(r / 16) * gb;
    // The group's codes as B tiles, cut out once for all token tiles.
    uint8_t* codes = sc.codes.data();
    for (int64_t b = 0; b < nb; ++b) store_steps<BITS, 0>(TileRegs<BITS>(g + size_t(b) * kTile), mk, codes + 1024 * b);
    for (int64_t t0 = 0; t0 < Tp; t0 += 16) {
      const int64_t live = std::min<int64_t>(16, T - t0);
      const int8_t* a = sc.a.data() + P * t0 * K;
      const float *d = sc.d.data() + t0 * nb, *s = sc.s.data() + t0 * nb;
      if (S && live > 8) {
        group_tile<BITS, S, 2>(g, codes, nb, a, K, d, s, live, y + t0 * ldy + r, ldy);
      } else {
        group_tile<BITS, S, 1>(g, codes, nb, a, K, d, s, live, y + t0 * ldy + r, ldy);
      }
    }
  }
  _tile_release();
}

template <bool S>
void run_bits(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  dispatch_bits(AllBitWidths{}, w.spec.bits, "il16-amx", [&](auto B) { run<B, S>(w, x, r0, r1, y, ldy); });
}

}  // namespace

bool amx_permission() {
#if defined(SYS_arch_prctl)
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

void matmul_rows_il16_amx(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (x.q2) return run_bits<true>(w, x, r0, r1, y, ldy);
  run_bits<false>(w, x, r0, r1, y, ldy);
}

}  // namespace mlxq::kernels::q8
