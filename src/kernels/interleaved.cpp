// The 16-row interleaved layout: packer and reference accessors (scalar; see interleaved.h).
#include "kernels/interleaved.h"

#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "quant/affine.h"

namespace mlxq::kernels::il16 {

namespace {

// Byte offset, within a tile, of (code register reg, lane l, byte j).
size_t byte_of(int reg, int l, int j) { return size_t(64 * reg + 4 * l + j); }

// The code bits of step m as runs that land contiguously in one register: bits [lo, lo + n) of
// the code at bit `shift` of register `reg`'s byte. The packer writes a run at a time.
struct Run {
  int reg, shift, lo, n;
};
int runs_of(int bits, int m, Run (&out)[8]) {
  int count = 0;
  for (int i = 0; i < bits; ++i) {
    const BitPlace p = bit_place(bits, m, i);
    Run* last = count ? &out[count - 1] : nullptr;
    if (last && last->reg == p.reg && last->shift + last->n == p.shift && last->lo + last->n == i)
      ++last->n;
    else
      out[count++] = {p.reg, p.shift, i, 1};
  }
  return count;
}

const uint8_t* tile(const uint8_t* il, int bits, int64_t K, int64_t r, int64_t k) {
  return il + size_t(r / kRows) * group_bytes(bits, K) + size_t(k / 64) * tile_bytes(bits);
}

}  // namespace

bool supported(const Matrix& w, int64_t max_k) {
  const int b = w.spec.bits;
  return w.quantized && (b == 2 || b == 3 || b == 4 || b == 5 || b == 6 || b == 8) && w.spec.group_size == 64 &&
         w.dtype == DType::BF16 && w.rows > 0 && w.rows % kRows == 0 && w.cols % 64 == 0 && w.cols <= max_k;
}

void pack(const Matrix& w, int64_t g0, int64_t g1, uint8_t* out) {
  const int bits = w.spec.bits;
  const int64_t K = w.cols, nb = K / 64;
  const size_t tb = tile_bytes(bits), cb = code_bytes(bits);
  struct StepRuns {
    Run r[8];
    int count;
  } runs[16];
  for (int m = 0; m < 16; ++m) runs[m].count = runs_of(bits, m, runs[m].r);
  std::vector<uint8_t> codes(static_cast<size_t>(kRows * K));
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t l = 0; l < kRows; ++l)
      quant::unpack_row(w.data + size_t(16 * g + l) * w.row_bytes, K, bits, &codes[size_t(l * K)]);
    uint8_t* grp = out + size_t(g - g0) * group_bytes(bits, K);
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* t = grp + size_t(b) * tb;
      std::memset(t, 0, cb);
      for (int l = 0; l < kRows; ++l) {
        for (int m = 0; m < 16; ++m)
          for (int j = 0; j < 4; ++j) {
            const uint32_t c = codes[size_t(l * K + 64 * b + 4 * m + j)];
            for (int i = 0; i < runs[m].count; ++i) {
              const Run& u = runs[m].r[i];
              uint8_t& byte = t[byte_of(u.reg, l, j)];
              byte = uint8_t(byte | (((c >> u.lo) & ((1u << u.n) - 1)) << u.shift));
            }
          }
        const size_t sb = size_t(16 * g + l) * w.sb_row_bytes + size_t(2 * b);
        std::memcpy(t + cb + 2 * l, w.scales + sb, 2);
        std::memcpy(t + cb + 32 + 2 * l, w.biases + sb, 2);
      }
    }
  }
}

uint32_t code_at(const uint8_t* il, int bits, int64_t K, int64_t r, int64_t k) {
  const uint8_t* t = tile(il, bits, K, r, k);
  const int m = int(k % 64 / 4), l = int(r % kRows), j = int(k % 4);
  uint32_t c = 0;
  for (int i = 0; i < bits; ++i) {
    const BitPlace p = bit_place(bits, m, i);
    c |= ((uint32_t(t[byte_of(p.reg, l, j)]) >> p.shift) & 1u) << i;
  }
  return c;
}

uint16_t scale_at(const uint8_t* il, int bits, int64_t K, int64_t r, int64_t k) {
  return load_u16(tile(il, bits, K, r, k) + code_bytes(bits) + 2 * (r % kRows));
}

uint16_t bias_at(const uint8_t* il, int bits, int64_t K, int64_t r, int64_t k) {
  return load_u16(tile(il, bits, K, r, k) + code_bytes(bits) + 32 + 2 * (r % kRows));
}

}  // namespace mlxq::kernels::il16
