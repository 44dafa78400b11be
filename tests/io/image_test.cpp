// Image decoding (inputs written here with stb_image_write, libwebp's encoder and a small GIF
// writer), the errors on bad files, and the bicubic resize against a plain double-precision
// reading of Pillow's algorithm.
#include "io/image.h"

#include <gtest/gtest.h>
#include <stb_image_write.h>
#include <webp/encode.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "test_util.h"

namespace mlxq::io {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& v : b) v = uint8_t(rng() & 0xff);
  return b;
}

void append(void* ctx, void* data, int size) {
  auto* out = static_cast<Bytes*>(ctx);
  out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}

Bytes png(int w, int h, int comp, const Bytes& px) {
  Bytes out;
  EXPECT_NE(stbi_write_png_to_func(append, &out, w, h, comp, px.data(), w * comp), 0);
  return out;
}

Bytes webp_lossless(int w, int h, const Bytes& px, bool alpha) {
  uint8_t* data = nullptr;
  const size_t n = alpha ? WebPEncodeLosslessRGBA(px.data(), w, h, w * 4, &data)
                         : WebPEncodeLosslessRGB(px.data(), w, h, w * 3, &data);
  EXPECT_GT(n, 0u);
  Bytes out(data, data + n);
  WebPFree(data);
  return out;
}

// A GIF of 2-bit palette indices, one image descriptor per frame. LZW with a clear code after
// every two literals, so the code width stays 3 bits in any decoder.
Bytes gif(int w, int h, const Bytes& palette_rgb4, const std::vector<Bytes>& frames) {
  const uint8_t head[] = {'G', 'I', 'F', '8', '9', 'a', uint8_t(w), uint8_t(w >> 8), uint8_t(h),
                          uint8_t(h >> 8), 0x81, 0, 0};  // global table of 4 colours
  Bytes out;
  out.reserve(64 + palette_rgb4.size());  // (g++ 12 warns of a bounds error on an insert after a 13-byte init)
  out.assign(std::begin(head), std::end(head));
  out.insert(out.end(), palette_rgb4.begin(), palette_rgb4.end());
  for (const Bytes& idx : frames) {
    const Bytes desc = {0x2c, 0, 0, 0, 0, uint8_t(w), uint8_t(w >> 8), uint8_t(h), uint8_t(h >> 8), 0};
    out.insert(out.end(), desc.begin(), desc.end());
    out.push_back(2);  // LZW minimum code size
    Bytes packed;
    uint32_t acc = 0;
    int nbits = 0;
    auto emit = [&](uint32_t code) {
      acc |= code << nbits;
      for (nbits += 3; nbits >= 8; nbits -= 8, acc >>= 8) packed.push_back(uint8_t(acc));
    };
    for (size_t i = 0; i < idx.size(); ++i) {
      if (i % 2 == 0) emit(4);  // clear
      emit(idx[i]);
    }
    emit(5);  // end of information
    if (nbits > 0) packed.push_back(uint8_t(acc));
    for (size_t i = 0; i < packed.size(); i += 255) {
      const size_t n = std::min<size_t>(255, packed.size() - i);
      out.push_back(uint8_t(n));
      out.insert(out.end(), packed.begin() + long(i), packed.begin() + long(i + n));
    }
    out.push_back(0);
  }
  out.push_back(0x3b);
  return out;
}

uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

// A valid PNG whose IHDR declares w x h (CRC fixed).
Bytes png_declaring(int64_t w, int64_t h) {
  Bytes b = png(4, 4, 3, random_bytes(48, 1));
  for (int i = 0; i < 4; ++i) {
    b[size_t(16 + i)] = uint8_t(w >> (24 - 8 * i));
    b[size_t(20 + i)] = uint8_t(h >> (24 - 8 * i));
  }
  const uint32_t c = crc32(&b[12], 17);  // chunk type and data
  for (int i = 0; i < 4; ++i) b[size_t(29 + i)] = uint8_t(c >> (24 - 8 * i));
  return b;
}

std::string error_of(const Bytes& b, const std::string& name, const ImageLimits& limits = {}) {
  try {
    decode_image(b, name, limits);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << name << ": decoded without an error";
  return "";
}

TEST(Image, DecodesPngBmpAndLosslessWebpExactly) {
  const int w = 13, h = 7;
  const Bytes rgb = random_bytes(w * h * 3, 2);
  for (const auto& [label, bytes] : std::vector<std::pair<std::string, Bytes>>{
           {"a.png", png(w, h, 3, rgb)}, {"a.webp", webp_lossless(w, h, rgb, false)}}) {
    const Image img = decode_image(bytes, label);
    EXPECT_EQ(img.width, w) << label;
    EXPECT_EQ(img.height, h) << label;
    EXPECT_EQ(img.rgb, rgb) << label;
  }
  Bytes bmp;
  ASSERT_NE(stbi_write_bmp_to_func(append, &bmp, w, h, 3, rgb.data()), 0);
  EXPECT_EQ(decode_image(bmp, "a.bmp").rgb, rgb);
  test::TempDir d;  // and from a file
  const Bytes p = png(w, h, 3, rgb);
  test::write_file(d / "a.png", std::string(p.begin(), p.end()));
  const Image f = read_image(d / "a.png");
  EXPECT_EQ(f.rgb, rgb);
}

TEST(Image, GreyAndAlphaBecomeRgb) {
  const int w = 5, h = 4, n = w * h;
  const Bytes grey = random_bytes(n, 3), ga = random_bytes(n * 2, 4), rgba = random_bytes(n * 4, 5);
  Bytes want_grey, want_ga, want_rgba;
  for (int i = 0; i < n; ++i) {
    want_grey.insert(want_grey.end(), 3, grey[size_t(i)]);
    want_ga.insert(want_ga.end(), 3, ga[size_t(2 * i)]);  // alpha dropped, as PIL's convert('RGB')
    want_rgba.insert(want_rgba.end(), &rgba[size_t(4 * i)], &rgba[size_t(4 * i + 3)]);
  }
  EXPECT_EQ(decode_image(png(w, h, 1, grey), "g.png").rgb, want_grey);
  EXPECT_EQ(decode_image(png(w, h, 2, ga), "ga.png").rgb, want_ga);
  EXPECT_EQ(decode_image(png(w, h, 4, rgba), "rgba.png").rgb, want_rgba);
  // Lossless WebP keeps the colour of pixels that are not fully transparent.
  Bytes opaque_ish = rgba;
  for (int i = 0; i < n; ++i) opaque_ish[size_t(4 * i + 3)] |= 1;
  EXPECT_EQ(decode_image(webp_lossless(w, h, opaque_ish, true), "rgba.webp").rgb, want_rgba);
}

TEST(Image, DecodesJpegWithinTolerance) {
  const int w = 32, h = 24;
  Bytes rgb(w * h * 3);
  for (int y = 0; y < h; ++y)  // smooth, so JPEG's loss stays small
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &rgb[size_t(y * w + x) * 3];
      p[0] = uint8_t(x * 8);
      p[1] = uint8_t(y * 10);
      p[2] = uint8_t(128 + 60 * std::sin(0.2 * (x + y)));
    }
  Bytes jpg;
  ASSERT_NE(stbi_write_jpg_to_func(append, &jpg, w, h, 3, rgb.data(), 95), 0);
  const Image img = decode_image(jpg, "a.jpg");
  ASSERT_EQ(img.width, w);
  ASSERT_EQ(img.height, h);
  int worst = 0;
  double sum = 0;
  for (size_t i = 0; i < rgb.size(); ++i) {
    const int d = std::abs(int(img.rgb[i]) - int(rgb[i]));
    worst = std::max(worst, d);
    sum += d;
  }
  EXPECT_LE(worst, 24);
  EXPECT_LE(sum / double(rgb.size()), 3.0);
}

TEST(Image, GifGivesTheFirstFrame) {
  const Bytes palette = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30};
  const int w = 6, h = 3;
  Bytes first(w * h), second(w * h, 3);
  for (int i = 0; i < w * h; ++i) first[size_t(i)] = uint8_t((i * 7) % 4);
  const Image img = decode_image(gif(w, h, palette, {first, second}), "a.gif");
  ASSERT_EQ(img.width, w);
  ASSERT_EQ(img.height, h);
  Bytes want;
  for (uint8_t i : first) want.insert(want.end(), &palette[i * 3u], &palette[i * 3u + 3]);
  EXPECT_EQ(img.rgb, want);
}

TEST(Image, ErrorsNameTheFileAndTheProblem) {
  auto expect_error = [](const Bytes& b, const std::string& name,
                         std::initializer_list<const char*> parts, const ImageLimits& lim = {}) {
    const std::string e = error_of(b, name, lim);
    EXPECT_NE(e.find(name + ": "), std::string::npos) << e;
    for (const char* part : parts) EXPECT_NE(e.find(part), std::string::npos) << e;
  };
  expect_error({}, "none.png", {"empty file"});
  const std::string text = "hello, this is not an image";
  expect_error(Bytes(text.begin(), text.end()), "x.png",
               {"unknown or unsupported image format", "PNG, JPEG, BMP, GIF, WebP"});
  const Bytes good = png(64, 64, 3, random_bytes(64 * 64 * 3, 6));
  expect_error(Bytes(good.begin(), good.begin() + long(good.size() / 2)), "half.png",
               {"corrupt or truncated PNG", "stb_image: "});
  Bytes magic_only(good.begin(), good.begin() + 8);
  expect_error(magic_only, "sig.png", {"corrupt or truncated PNG"});
  expect_error(png_declaring(100000, 100000), "huge.png",
               {"100000x100000", "over the limit of 32768"});
  expect_error(png_declaring(8000, 8000), "big.png",
               {"8000x8000 = 64000000 pixels", "over the limit of 50000000 pixels"});
  expect_error(png_declaring(0, 16), "zero.png", {"zero width or height (0x16)"});
  expect_error(good, "limited.png", {"64x64 = 4096 pixels", "limit of 4000"}, {4000, 32768});
  const Bytes wp = webp_lossless(64, 64, random_bytes(64 * 64 * 3, 7), false);
  expect_error(Bytes(wp.begin(), wp.begin() + long(wp.size() / 2)), "half.webp",
               {"corrupt or truncated WebP", "libwebp: "});
  expect_error(Bytes(wp.begin(), wp.begin() + 16), "head.webp", {"corrupt or truncated WebP"});
  expect_error(gif(0, 5, Bytes(12, 0), {}), "zero.gif", {"zero width or height"});
  // Every cut of a valid file fails cleanly (or decodes), never crashes.
  for (size_t n = 0; n < good.size(); n += 97) {
    try {
      decode_image(std::span<const uint8_t>(good.data(), n), "cut.png");
    } catch (const Error&) {
    }
  }
  try {
    read_image("/nonexistent/dir/a.png");
    ADD_FAILURE() << "read a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/a.png"), std::string::npos);
  }
}

// ---- resize: a straightforward double-precision reading of Pillow's bicubic resample ----

double cubic_ref(double x) {
  x = std::fabs(x);
  if (x < 1) return 1.5 * x * x * x - 2.5 * x * x + 1;
  if (x < 2) return -0.5 * x * x * x + 2.5 * x * x - 4 * x + 2;
  return 0;
}

// Resamples each of `n_lines` lines (rows when along_x, else columns) of `in_size` RGB pixels to
// `out_size` pixels: every input pixel weighted by the cubic at its distance from the output's
// centre (in input pixels, divided by the scale when shrinking), weights normalized; rounds to 8
// bits.
Bytes ref_pass(const Bytes& src, int n_lines, int in_size, int out_size, bool along_x) {
  const double scale = double(in_size) / out_size, fs = std::max(scale, 1.0);
  const int w_in = along_x ? in_size : n_lines, w_out = along_x ? out_size : n_lines;
  Bytes dst(size_t(n_lines) * size_t(out_size) * 3);
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    std::vector<double> wt(static_cast<size_t>(in_size));
    double sum = 0;
    for (int j = 0; j < in_size; ++j) sum += wt[size_t(j)] = cubic_ref((j + 0.5 - center) / fs);
    for (int line = 0; line < n_lines; ++line)
      for (int c = 0; c < 3; ++c) {
        double v = 0;
        for (int j = 0; j < in_size; ++j) {
          const int x = along_x ? j : line, y = along_x ? line : j;
          v += wt[size_t(j)] / sum * src[size_t(y * w_in + x) * 3 + size_t(c)];
        }
        const int ox = along_x ? i : line, oy = along_x ? line : i;
        dst[size_t(oy * w_out + ox) * 3 + size_t(c)] = uint8_t(std::clamp(std::floor(v + 0.5), 0.0, 255.0));
      }
  }
  return dst;
}

Image resize_ref(const Image& in, int w, int h) {
  Image out{w, h, in.rgb};
  if (w != in.width) out.rgb = ref_pass(out.rgb, in.height, in.width, w, true);
  if (h != in.height) out.rgb = ref_pass(out.rgb, w, in.height, h, false);
  return out;
}

Image random_image(int w, int h, uint32_t seed) {
  return Image{w, h, random_bytes(size_t(w) * size_t(h) * 3, seed)};
}

TEST(ImageResize, MatchesAPlainReadingOfPillow) {
  struct Case { int w0, h0, w1, h1; };
  for (const Case& c : {Case{37, 23, 48, 48}, Case{100, 80, 31, 17}, Case{64, 64, 64, 64},
                        Case{10, 200, 48, 96}, Case{37, 23, 50, 23}, Case{37, 23, 37, 11},
                        Case{5, 3, 96, 48}, Case{200, 150, 1, 1}}) {
    const Image in = random_image(c.w0, c.h0, uint32_t(c.w0 * 1000 + c.h0));
    const Image got = resize_bicubic(in, c.w1, c.h1), want = resize_ref(in, c.w1, c.h1);
    ASSERT_EQ(got.width, c.w1);
    ASSERT_EQ(got.height, c.h1);
    ASSERT_EQ(got.rgb.size(), want.rgb.size());
    size_t exact = 0;
    int worst = 0;
    for (size_t i = 0; i < got.rgb.size(); ++i) {
      const int d = std::abs(int(got.rgb[i]) - int(want.rgb[i]));
      exact += d == 0;
      worst = std::max(worst, d);
    }
    const std::string label = std::to_string(c.w0) + "x" + std::to_string(c.h0) + " -> " +
                              std::to_string(c.w1) + "x" + std::to_string(c.h1);
    EXPECT_LE(worst, 1) << label;
    EXPECT_GE(double(exact), 0.99 * double(got.rgb.size())) << label << ": " << exact << " exact";
    if (c.w0 == c.w1 && c.h0 == c.h1) {
      EXPECT_EQ(got.rgb, in.rgb) << label;
    }
  }
}

TEST(ImageResize, ConstantStaysConstantAndShrinkingAverages) {
  for (uint8_t v : {0, 1, 137, 254, 255}) {
    const Image in{37, 23, Bytes(37 * 23 * 3, v)};
    for (auto [w, h] : std::initializer_list<std::pair<int, int>>{{48, 48}, {13, 7}, {100, 3}}) {
      const Image out = resize_bicubic(in, w, h);
      EXPECT_EQ(out.rgb, Bytes(size_t(w * h * 3), v)) << int(v) << " -> " << w << "x" << h;
    }
  }
  Image board{64, 64, Bytes(64 * 64 * 3)};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) board.rgb[size_t(y * 64 + x) * 3 + size_t(c)] = (x + y) % 2 ? 255 : 0;
  const Image small = resize_bicubic(board, 16, 16);
  for (uint8_t v : small.rgb) EXPECT_NEAR(v, 127.5, 8.0);  // antialiased, not aliased to 0/255
}

// Against Pillow itself (tests/data/image-resize, made by its make.py with Debian's python3-pil
// 9.4.0): Image.resize(size, BICUBIC) of a noise and a smooth image, shrinking, enlarging and
// both at once, one axis at a time; the same bytes.
TEST(ImageResize, MatchesPillowByteForByte) {
  const nlohmann::json cases = nlohmann::json::parse(test::read_file(test::data_path("image-resize/cases.json")));
  ASSERT_EQ(cases["cases"].size(), 10u);
  for (const auto& c : cases["cases"]) {
    const std::string label = c["input"].get<std::string>() + " -> " + c["expected"].get<std::string>();
    const Image in = read_image(test::data_path("image-resize/" + c["input"].get<std::string>()));
    const Image want = read_image(test::data_path("image-resize/" + c["expected"].get<std::string>()));
    const Image got = resize_bicubic(in, c["width"].get<int>(), c["height"].get<int>());
    ASSERT_EQ(got.width, want.width) << label;
    ASSERT_EQ(got.height, want.height) << label;
    size_t differ = 0;
    for (size_t i = 0; i < got.rgb.size(); ++i) differ += got.rgb[i] != want.rgb[i];
    EXPECT_EQ(differ, 0u) << label;
  }
}

TEST(ImageResize, RejectsBadSizes) {
  const Image in = random_image(4, 4, 8);
  EXPECT_THROW(resize_bicubic(in, 0, 4), Error);
  EXPECT_THROW(resize_bicubic(in, 4, -1), Error);
  EXPECT_THROW(resize_bicubic(Image{4, 4, Bytes(5)}, 2, 2), Error);
}

}  // namespace
}  // namespace mlxq::io
