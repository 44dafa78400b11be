// Images in for the vision path: PNG, JPEG, BMP, GIF (first frame) and WebP decoded to 8-bit RGB,
// and PIL's bicubic resize (spec gemma4-architecture.md §10.2 steps 1-2).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace mlxq::io {

// 8-bit RGB, row-major, 3 bytes per pixel: rgb.size() == width * height * 3.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Refused before the pixels are decoded (from the size the file's header declares).
struct ImageLimits {
  int64_t max_pixels = 50'000'000;
  int max_side = 32768;
};

// Decodes an encoded image; any channel layout becomes RGB (grey is replicated, alpha dropped as
// PIL's convert('RGB') does). `name` (a path or a label) starts every error message. Throws
// mlxq::Error on an empty, unknown, corrupt, truncated, zero-sized or over-the-limit image.
Image decode_image(std::span<const uint8_t> bytes, const std::string& name,
                   const ImageLimits& limits = {});
Image read_image(const std::string& path, const ImageLimits& limits = {});

// PIL's Image.resize((width, height), Image.BICUBIC): separable cubic (a = -0.5) with the support
// widened by the scale when shrinking (antialias), Pillow's 22-bit fixed-point coefficients and an
// 8-bit image between the horizontal and the vertical pass. The input itself when the size is
// unchanged.
Image resize_bicubic(const Image& in, int width, int height);

}  // namespace mlxq::io
