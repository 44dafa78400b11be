// Minimal .npy (format 1.0/2.0) reader and writer for little-endian float32 arrays.
#include "io/npy.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>

#include "core/error.h"
#include "io/checkpoint_writer.h"

namespace mlxq::io {

NpyF32 read_npy_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), path + ": cannot open");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  check(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0, path + ": not a .npy file");
  const int major = uint8_t(bytes[6]);
  size_t hlen, hoff;
  if (major == 1) {
    hlen = uint8_t(bytes[8]) | (size_t(uint8_t(bytes[9])) << 8);
    hoff = 10;
  } else {
    check(bytes.size() >= 12, path + ": truncated .npy header");
    hlen = 0;
    for (int i = 3; i >= 0; --i) hlen = (hlen << 8) | uint8_t(bytes[8 + i]);
    hoff = 12;
  }
  check(hoff + hlen <= bytes.size(), path + ": truncated .npy header");
  const std::string h = bytes.substr(hoff, hlen);
  check(h.find("'descr': '<f4'") != std::string::npos, path + ": dtype is not '<f4'");
  check(h.find("'fortran_order': False") != std::string::npos, path + ": Fortran order");
  std::smatch m;
  check(std::regex_search(h, m, std::regex("'shape': \\(([^)]*)\\)")), path + ": no shape");
  NpyF32 out;
  int64_t n = 1;
  const std::string dims = m[1].str();
  std::regex num("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator();
       ++it) {
    out.shape.push_back(std::stoll(it->str()));
    n *= out.shape.back();
  }
  const size_t need = size_t(n) * 4;
  check(bytes.size() - hoff - hlen == need, path + ": data size does not match the shape");
  out.data.resize(size_t(n));
  std::memcpy(out.data.data(), bytes.data() + hoff + hlen, need);
  return out;
}

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    n *= shape[i];
  }
  if (shape.size() == 1) dims += ",";
  std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  out += char(h.size() & 0xff);
  out += char(h.size() >> 8);
  out += h;
  out.append(reinterpret_cast<const char*>(data), size_t(n) * 4);
  write_file_atomic(path, out);
}

}  // namespace mlxq::io
