// Internal to the AMX kernels (matmul_il16_amx.cpp, matmul_bf16_amx.cpp): the tile configuration
// both use. Include only from files compiled with -mamx-tile.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace mlxq::kernels::q8 {

// LDTILECFG's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Configures tmm0..tmm7 as full tiles, 16 rows of 64 bytes each (call TILERELEASE when done).
inline void configure_full_tiles() {
  TileConfig cfg;
  for (int i = 0; i < 8; ++i) {
    cfg.colsb[i] = 64;
    cfg.rows[i] = 16;
  }
  _tile_loadconfig(&cfg);
}

}  // namespace mlxq::kernels::q8
