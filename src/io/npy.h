// NumPy .npy files of float32 (the `mlxq logits` output and the golden logits).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mlxq::io {

struct NpyF32 {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

NpyF32 read_npy_f32(const std::string& path);  // '<f4', C order; throws Error otherwise
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace mlxq::io
