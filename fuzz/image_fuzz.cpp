// libFuzzer target: decode_image must never crash on any bytes; a bad image is an mlxq::Error.
// A successful decode holds width * height * 3 bytes within the limits, set low here so the
// fuzzer spends its time in the decoders, not in allocating huge images. stb_image is compiled
// here from Debian's header (CMakeLists.txt: the fuzzer instruments it; libstb.so is not).
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include <cstdlib>

#include "core/error.h"
#include "io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mlxq::io::ImageLimits limits;
  limits.max_pixels = 4'000'000;
  limits.max_side = 8192;
  try {
    const mlxq::io::Image img = mlxq::io::decode_image({data, size}, "fuzz", limits);
    if (img.width <= 0 || img.height <= 0 || int64_t(img.width) * img.height > limits.max_pixels ||
        img.rgb.size() != size_t(img.width) * size_t(img.height) * 3)
      std::abort();
  } catch (const mlxq::Error&) {
  }
  return 0;
}
