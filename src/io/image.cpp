// Image decoding through Debian's compiled stb_image (PNG, JPEG, BMP, GIF) and libwebp, with the
// declared size checked before any pixel is decoded; Pillow's bicubic resampling
// (libImaging/Resample.c) reproduced to the bit, fixed-point rounding included.
#include "io/image.h"

#include <stb_image.h>
#include <webp/decode.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <memory>
#include <string_view>

#include "core/error.h"
#include "core/mapped_file.h"

namespace mlxq::io {
namespace {

constexpr const char* kSupported = "PNG, JPEG, BMP, GIF, WebP";

enum class Format { kUnknown, kPng, kJpeg, kBmp, kGif, kWebp };

const char* format_name(Format f) {
  switch (f) {
    case Format::kPng: return "PNG";
    case Format::kJpeg: return "JPEG";
    case Format::kBmp: return "BMP";
    case Format::kGif: return "GIF";
    case Format::kWebp: return "WebP";
    case Format::kUnknown: break;
  }
  return "unknown";
}

bool has_at(std::span<const uint8_t> b, size_t at, std::string_view magic) {
  if (b.size() < at + magic.size()) return false;
  for (size_t i = 0; i < magic.size(); ++i)
    if (b[at + i] != uint8_t(magic[i])) return false;
  return true;
}

// By the magic bytes alone: stb_image also reads TGA, whose header has no magic and accepts
// garbage, and PSD/PIC/PNM/HDR, which the vision path does not take.
Format sniff(std::span<const uint8_t> b) {
  if (has_at(b, 0, "\x89PNG\r\n\x1a\n")) return Format::kPng;
  if (has_at(b, 0, "\xff\xd8\xff")) return Format::kJpeg;
  if (has_at(b, 0, "GIF87a") || has_at(b, 0, "GIF89a")) return Format::kGif;
  if (has_at(b, 0, "BM")) return Format::kBmp;
  if (has_at(b, 0, "RIFF") && has_at(b, 8, "WEBP")) return Format::kWebp;
  return Format::kUnknown;
}

void check_size(const std::string& name, int64_t w, int64_t h, const ImageLimits& limits) {
  const std::string dims = std::to_string(w) + "x" + std::to_string(h);
  check(w > 0 && h > 0, name + ": image has zero width or height (" + dims + ")");
  check(w <= limits.max_side && h <= limits.max_side,
        name + ": image is " + dims + ", a side over the limit of " + std::to_string(limits.max_side) +
            " pixels");
  check(w * h <= limits.max_pixels, name + ": image is " + dims + " = " + std::to_string(w * h) +
                                        " pixels, over the limit of " +
                                        std::to_string(limits.max_pixels) + " pixels");
}

// The size a PNG's IHDR or a GIF's logical screen declares, read directly: stb's own header check
// refuses sizes over 2^30 bytes with only "too large", where the limit's message says more.
void check_declared_size(std::span<const uint8_t> b, Format f, const std::string& name,
                         const ImageLimits& limits) {
  if (f == Format::kPng && has_at(b, 12, "IHDR") && b.size() >= 24) {
    auto be32 = [&](size_t at) {
      return int64_t(b[at]) << 24 | int64_t(b[at + 1]) << 16 | int64_t(b[at + 2]) << 8 | b[at + 3];
    };
    check_size(name, be32(16), be32(20), limits);
  } else if (f == Format::kGif && b.size() >= 10) {
    check_size(name, b[6] | b[7] << 8, b[8] | b[9] << 8, limits);
  }
}

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown error";
}

[[noreturn]] void stb_fail(const std::string& name, Format f) {
  const std::string reason = stb_reason();
  if (reason == "too large")
    throw Error(name + ": " + format_name(f) + " image too large for the decoder (stb_image: " +
                reason + ")");
  throw Error(name + ": corrupt or truncated " + format_name(f) + " data (stb_image: " + reason + ")");
}

Image decode_stb(std::span<const uint8_t> b, Format f, const std::string& name,
                 const ImageLimits& limits) {
  check(b.size() <= size_t(INT_MAX), name + ": " + format_name(f) + " file of " +
                                         std::to_string(b.size()) + " bytes is over 2 GiB");
  const int len = int(b.size());
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(b.data(), len, &w, &h, &channels)) stb_fail(name, f);
  check_size(name, w, h, limits);
  // Asking for 3 channels makes stb replicate grey and drop alpha (PIL's convert('RGB')).
  std::unique_ptr<stbi_uc, void (*)(void*)> px(
      stbi_load_from_memory(b.data(), len, &w, &h, &channels, 3), &stbi_image_free);
  if (!px) stb_fail(name, f);
  check_size(name, w, h, limits);
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(px.get(), px.get() + size_t(w) * size_t(h) * 3);
  return img;
}

const char* webp_status(VP8StatusCode s) {
  switch (s) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data";
  }
  return "unknown status";
}

Image decode_webp(std::span<const uint8_t> b, const std::string& name, const ImageLimits& limits) {
  WebPDecoderConfig config;
  check(WebPInitDecoderConfig(&config) != 0, name + ": libwebp version mismatch");
  VP8StatusCode st = WebPGetFeatures(b.data(), b.size(), &config.input);
  check(st == VP8_STATUS_OK,
        name + ": corrupt or truncated WebP header (libwebp: " + webp_status(st) + ")");
  check(!config.input.has_animation, name + ": animated WebP is not supported");
  check_size(name, config.input.width, config.input.height, limits);
  Image img;
  img.width = config.input.width;
  img.height = config.input.height;
  img.rgb.resize(size_t(img.width) * size_t(img.height) * 3);
  // Straight into the image's buffer; MODE_RGB drops alpha (not premultiplied).
  config.output.colorspace = MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = img.rgb.data();
  config.output.u.RGBA.stride = img.width * 3;
  config.output.u.RGBA.size = img.rgb.size();
  st = WebPDecode(b.data(), b.size(), &config);
  WebPFreeDecBuffer(&config.output);  // nothing to free with external memory, by the API's contract
  check(st == VP8_STATUS_OK,
        name + ": corrupt or truncated WebP data (libwebp: " + webp_status(st) + ")");
  return img;
}

// ---- Pillow's bicubic resampling ----

// Fixed-point coefficients: 8 bits of result, 2 bits for the kernel's overshoot (Pillow's
// PRECISION_BITS); sums start at half a unit so the shift rounds.
constexpr int kPrecisionBits = 32 - 8 - 2;

double cubic(double x) {  // Keys' cubic convolution kernel, a = -0.5, support 2
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

uint8_t clip8(int32_t acc) { return uint8_t(std::clamp(acc >> kPrecisionBits, 0, 255)); }

// One pass's taps: output i reads inputs [first[i], first[i] + count[i]) with the weights
// k[i * ksize + j] (Pillow's precompute_coeffs and normalize_coeffs_8bpc, box = the whole image).
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> k;
};

Taps make_taps(int in_size, int out_size) {
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);  // shrinking widens the kernel: antialias
  const double support = 2.0 * filterscale;
  const double inv_filterscale = 1.0 / filterscale;  // a product, as Pillow: same rounding
  Taps t;
  t.ksize = int(std::ceil(support)) * 2 + 1;
  t.first.resize(size_t(out_size));
  t.count.resize(size_t(out_size));
  t.k.assign(size_t(out_size) * size_t(t.ksize), 0);
  std::vector<double> w(size_t(t.ksize));
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    const int lo = std::max(int(center - support + 0.5), 0);  // int(): truncation, as Pillow
    const int hi = std::min(int(center + support + 0.5), in_size);
    const int n = std::min(hi - lo, t.ksize);
    double sum = 0.0;
    for (int j = 0; j < n; ++j) {
      w[size_t(j)] = cubic((j + lo - center + 0.5) * inv_filterscale);
      sum += w[size_t(j)];
    }
    int32_t* k = &t.k[size_t(i) * size_t(t.ksize)];
    for (int j = 0; j < n; ++j) {
      const double v = (sum != 0.0 ? w[size_t(j)] / sum : w[size_t(j)]) * (1 << kPrecisionBits);
      k[j] = int32_t(v < 0 ? v - 0.5 : v + 0.5);
    }
    t.first[size_t(i)] = lo;
    t.count[size_t(i)] = std::max(n, 0);
  }
  return t;
}

// Rows of `src` (src_w pixels wide) to rows of `dst` (out_w wide).
void resample_horizontal(const uint8_t* src, int src_w, int rows, const Taps& t, int out_w,
                         uint8_t* dst) {
  for (int y = 0; y < rows; ++y) {
    const uint8_t* row = src + size_t(y) * size_t(src_w) * 3;
    uint8_t* out = dst + size_t(y) * size_t(out_w) * 3;
    for (int x = 0; x < out_w; ++x) {
      const int32_t* k = &t.k[size_t(x) * size_t(t.ksize)];
      const uint8_t* p = row + size_t(t.first[size_t(x)]) * 3;
      int32_t r = 1 << (kPrecisionBits - 1), g = r, b = r;
      for (int j = 0; j < t.count[size_t(x)]; ++j) {
        r += p[3 * j] * k[j];
        g += p[3 * j + 1] * k[j];
        b += p[3 * j + 2] * k[j];
      }
      out[3 * x] = clip8(r);
      out[3 * x + 1] = clip8(g);
      out[3 * x + 2] = clip8(b);
    }
  }
}

// Columns: each output row is a weighted sum of whole input rows (row_offset shifts first[]).
void resample_vertical(const uint8_t* src, int w, const Taps& t, int row_offset, int out_h,
                       uint8_t* dst) {
  const size_t stride = size_t(w) * 3;
  std::vector<int32_t> acc(stride);
  for (int y = 0; y < out_h; ++y) {
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    const int32_t* k = &t.k[size_t(y) * size_t(t.ksize)];
    for (int j = 0; j < t.count[size_t(y)]; ++j) {
      const uint8_t* row = src + size_t(t.first[size_t(y)] - row_offset + j) * stride;
      const int32_t kj = k[j];
      for (size_t i = 0; i < stride; ++i) acc[i] += row[i] * kj;
    }
    uint8_t* out = dst + size_t(y) * stride;
    for (size_t i = 0; i < stride; ++i) out[i] = clip8(acc[i]);
  }
}

}  // namespace

Image decode_image(std::span<const uint8_t> bytes, const std::string& name,
                   const ImageLimits& limits) {
  check(!bytes.empty(), name + ": empty file");
  const Format f = sniff(bytes);
  check(f != Format::kUnknown,
        name + ": unknown or unsupported image format (supported: " + kSupported + ")");
  if (f == Format::kWebp) return decode_webp(bytes, name, limits);
  check_declared_size(bytes, f, name, limits);
  return decode_stb(bytes, f, name, limits);
}

Image read_image(const std::string& path, const ImageLimits& limits) {
  const MappedFile file(path);
  return decode_image(std::span<const uint8_t>(file.data(), file.size()), path, limits);
}

Image resize_bicubic(const Image& in, int width, int height) {
  check(in.width > 0 && in.height > 0 &&
            in.rgb.size() == size_t(in.width) * size_t(in.height) * 3,
        "resize_bicubic: the input is not a " + std::to_string(in.width) + "x" +
            std::to_string(in.height) + " RGB image (" + std::to_string(in.rgb.size()) + " bytes)");
  check(width > 0 && height > 0, "resize_bicubic: target size " + std::to_string(width) + "x" +
                                     std::to_string(height) + " is not positive");
  if (width == in.width && height == in.height) return in;
  // Pillow's order: the horizontal pass first, over only the rows the vertical pass will read,
  // into an 8-bit image; then the vertical pass. A pass whose size is unchanged is skipped.
  const bool horizontal = width != in.width, vertical = height != in.height;
  const Taps tv = vertical ? make_taps(in.height, height) : Taps{};
  const int row0 = vertical ? tv.first.front() : 0;
  const int row1 = vertical ? tv.first.back() + tv.count.back() : in.height;
  Image out;
  out.width = width;
  out.height = height;
  std::vector<uint8_t> tmp;
  const uint8_t* src = in.rgb.data();
  int row_offset = 0;
  if (horizontal) {
    const Taps th = make_taps(in.width, width);
    tmp.resize(size_t(width) * size_t(row1 - row0) * 3);
    resample_horizontal(in.rgb.data() + size_t(row0) * size_t(in.width) * 3, in.width, row1 - row0,
                        th, width, tmp.data());
    if (!vertical) {
      out.rgb = std::move(tmp);
      return out;
    }
    src = tmp.data();
    row_offset = row0;
  }
  out.rgb.resize(size_t(width) * size_t(height) * 3);
  resample_vertical(src, width, tv, row_offset, height, out.rgb.data());
  return out;
}

}  // namespace mlxq::io
