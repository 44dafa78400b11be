// Importance matrices: llama.cpp GGUF / legacy .dat reader, GGUF writer, Gemma-4 canonical names
// and per-matrix importances (see imatrix.h; mlx-quant-format.md §5).
#include "convert/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/checkpoint_writer.h"

namespace mlxq::quant {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint32_t kGgufVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kGgmlF32 = 0;
constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr size_t kMaxTensorName = 63;     // GGML_MAX_NAME - 1: what llama.cpp can read back
constexpr int64_t kMaxMatrices = 1 << 16; // far above any expert count; bounds allocations
constexpr int kMaxArrayDepth = 8;

// GGUF metadata value types (gguf.h).
enum GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// Byte size of a fixed-size GGUF value type, 0 for string/array/unknown.
size_t fixed_size(uint32_t t) {
  switch (t) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
  }
}

// Bounds-checked little-endian cursor over a mapped file; every failure names the file.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, std::string what) : p_(p), n_(n), what_(std::move(what)) {}
  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }
  [[noreturn]] void fail(const std::string& msg) const { throw Error(what_ + ": " + msg); }
  void need(uint64_t bytes, const char* reading) const {
    if (bytes > left())
      fail("truncated at byte " + std::to_string(pos_) + " reading " + reading + " (" +
           std::to_string(bytes) + " bytes needed, " + std::to_string(left()) + " left)");
  }
  const uint8_t* take(uint64_t bytes, const char* reading) {
    need(bytes, reading);
    const uint8_t* q = p_ + pos_;
    pos_ += size_t(bytes);
    return q;
  }
  uint32_t u32(const char* reading) { return load_u32(take(4, reading)); }
  int32_t i32(const char* reading) { int32_t v; std::memcpy(&v, take(4, reading), 4); return v; }
  uint64_t u64(const char* reading) { uint64_t v; std::memcpy(&v, take(8, reading), 8); return v; }
  std::string str(const char* reading) {  // gguf string: u64 length, bytes, no terminator
    const uint64_t len = u64(reading);
    const uint8_t* q = take(len, reading);
    return std::string(reinterpret_cast<const char*>(q), size_t(len));
  }

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0;
  std::string what_;
};

// Skips one value of type `t` (arrays recursively), checking sizes before looping.
void skip_value(Cursor& c, uint32_t t, const std::string& key, int depth) {
  if (size_t s = fixed_size(t)) { c.take(s, "a metadata value"); return; }
  if (t == kString) { c.str("a metadata string"); return; }
  if (t != kArray) c.fail("metadata '" + key + "' has unknown value type id " + std::to_string(t));
  if (depth >= kMaxArrayDepth) c.fail("metadata '" + key + "' nests arrays too deeply");
  const uint32_t et = c.u32("an array element type");
  const uint64_t n = c.u64("an array length");
  if (size_t s = fixed_size(et)) {
    if (n > c.left() / s)
      c.fail("metadata '" + key + "': array of " + std::to_string(n) + " elements runs past the end");
    c.take(n * s, "array elements");
    return;
  }
  if (et != kString && et != kArray)
    c.fail("metadata '" + key + "' has an array of unknown value type id " + std::to_string(et));
  const uint64_t min_elem = et == kString ? 8 : 12;
  if (n > c.left() / min_elem)
    c.fail("metadata '" + key + "': array of " + std::to_string(n) + " elements runs past the end");
  for (uint64_t i = 0; i < n; ++i) skip_value(c, et, key, depth + 1);
}

// An integer KV that must fit in u32 (llama.cpp writes u32; other integer types are accepted).
uint32_t read_u32_value(Cursor& c, uint32_t t, const std::string& key) {
  int64_t v = 0;
  switch (t) {
    case kU8: v = *c.take(1, key.c_str()); break;
    case kU16: v = load_u16(c.take(2, key.c_str())); break;
    case kU32: v = c.u32(key.c_str()); break;
    case kI32: v = c.i32(key.c_str()); break;
    case kU64: { uint64_t u = c.u64(key.c_str()); v = u > UINT32_MAX ? -1 : int64_t(u); break; }
    case kI64: { uint64_t u = c.u64(key.c_str()); std::memcpy(&v, &u, 8); break; }
    default:
      c.fail("metadata '" + key + "' has value type id " + std::to_string(t) + ", expected an unsigned integer");
  }
  if (v < 0 || v > int64_t(UINT32_MAX)) c.fail("metadata '" + key + "' is out of range");
  return uint32_t(v);
}

struct TensorInfo {
  std::string name;
  uint64_t ne[kMaxDims] = {1, 1, 1, 1};
  uint64_t numel = 1;
  uint64_t offset = 0;
};

// Copies `n` f32 values from unaligned `p`, rejecting what a sum of squares / count cannot be.
std::vector<float> load_values(const uint8_t* p, uint64_t n, bool allow_negative, const Cursor& c,
                               const std::string& tensor, uint64_t first_index) {
  std::vector<float> v(static_cast<size_t>(n));
  if (n) std::memcpy(v.data(), p, size_t(n) * 4);
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]) || (!allow_negative && v[i] < 0))
      c.fail(tensor + "[" + std::to_string(first_index + i) + "] is " + std::to_string(v[i]) +
             (allow_negative ? ", expected a finite count" : ", expected a finite sum of squares >= 0"));
  return v;
}

std::string shape_of(const TensorInfo& t) {
  return "[" + std::to_string(t.ne[0]) + ", " + std::to_string(t.ne[1]) + ", " + std::to_string(t.ne[2]) + ", " +
         std::to_string(t.ne[3]) + "]";
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

Imatrix read_gguf(const uint8_t* data, size_t size, const std::string& path) {
  Cursor c(data, size, path);
  c.u32("the magic");
  const uint32_t version = c.u32("the GGUF version");
  if (version != 0 && (version & 0xffffu) == 0)
    c.fail("big-endian GGUF (version field " + std::to_string(version) + ") is not supported");
  if (version < kGgufVersion)
    c.fail("GGUF version " + std::to_string(version) + " is not supported (need >= 3)");
  const uint64_t n_tensors = c.u64("the tensor count");
  const uint64_t n_kv = c.u64("the metadata count");
  // Each tensor info takes at least 24 bytes, each KV at least 13: bound the counts by the file.
  if (n_tensors > c.left() / 24)
    c.fail("tensor count " + std::to_string(n_tensors) + " does not fit in the file");
  if (n_kv > c.left() / 13) c.fail("metadata count " + std::to_string(n_kv) + " does not fit in the file");

  Imatrix out;
  uint64_t alignment = kDefaultAlignment;
  std::set<std::string> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = c.str("a metadata key");
    if (!keys.insert(key).second) c.fail("duplicate metadata key '" + key + "'");
    const uint32_t t = c.u32("a metadata type");
    if (key == "general.alignment") {
      if (t != kU32)
        c.fail("general.alignment has value type id " + std::to_string(t) + ", expected u32 (4)");
      alignment = c.u32("general.alignment");
      if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        c.fail("general.alignment " + std::to_string(alignment) + " is not a power of two");
    } else if (key == "general.type") {
      if (t != kString)
        c.fail("general.type has value type id " + std::to_string(t) + ", expected string (8)");
      const std::string type = c.str("general.type");
      if (type != "imatrix") c.fail("general.type is '" + type + "', not 'imatrix' (is this a model file?)");
    } else if (key == "imatrix.chunk_count") {
      out.chunk_count = read_u32_value(c, t, key);
    } else if (key == "imatrix.chunk_size") {
      out.chunk_size = read_u32_value(c, t, key);
    } else if (key == "imatrix.datasets") {
      if (t != kArray)
        c.fail("imatrix.datasets has value type id " + std::to_string(t) + ", expected array (9)");
      const uint32_t et = c.u32("imatrix.datasets element type");
      if (et != kString)
        c.fail("imatrix.datasets is an array of type id " + std::to_string(et) + ", expected strings");
      const uint64_t n = c.u64("imatrix.datasets length");
      if (n > c.left() / 8)
        c.fail("imatrix.datasets: " + std::to_string(n) + " strings do not fit in the file");
      out.datasets.reserve(size_t(n));
      for (uint64_t j = 0; j < n; ++j) out.datasets.push_back(c.str("an imatrix.datasets string"));
    } else {
      skip_value(c, t, key, 0);
    }
  }

  std::vector<TensorInfo> infos(static_cast<size_t>(n_tensors));
  std::map<std::string, size_t> by_name;
  const uint64_t max_numel = size / 4;
  for (auto& ti : infos) {
    ti.name = c.str("a tensor name");
    if (ti.name.empty()) c.fail("tensor with an empty name");
    if (!by_name.emplace(ti.name, size_t(&ti - infos.data())).second)
      c.fail("duplicate tensor '" + ti.name + "'");
    const uint32_t n_dims = c.u32("a tensor's dimension count");
    if (n_dims < 1 || n_dims > kMaxDims)
      c.fail("tensor '" + ti.name + "' has " + std::to_string(n_dims) + " dimensions (expected 1 to 4)");
    for (uint32_t d = 0; d < n_dims; ++d) {
      ti.ne[d] = c.u64("a tensor dimension");
      if (ti.ne[d] != 0 && ti.numel > max_numel / ti.ne[d])
        c.fail("tensor '" + ti.name + "' is larger than the file");
      ti.numel *= ti.ne[d];
    }
    const uint32_t type = c.u32("a tensor type");
    if (type != kGgmlF32)
      c.fail("tensor '" + ti.name + "' has ggml type " + std::to_string(type) + ", expected F32 (0)");
    ti.offset = c.u64("a tensor offset");
  }

  // The data section starts at the aligned end of the header. Tensor data is contiguous in info
  // order, each padded to the alignment (llama.cpp rejects anything else): no two tensors share
  // bytes, so what is allocated below is bounded by the file size.
  const uint64_t data_start = (uint64_t(c.pos()) + alignment - 1) / alignment * alignment;
  uint64_t expected = 0;
  for (const auto& ti : infos) {
    const uint64_t nbytes = ti.numel * 4;
    if (ti.offset % alignment != 0)
      c.fail("tensor '" + ti.name + "' offset " + std::to_string(ti.offset) +
             " is not a multiple of the alignment " + std::to_string(alignment));
    if (ti.offset != expected)
      c.fail("tensor '" + ti.name + "' offset " + std::to_string(ti.offset) + ", expected " +
             std::to_string(expected) + " (tensor data must follow in order, padded to the alignment)");
    expected += (nbytes + alignment - 1) / alignment * alignment;
    if (data_start > size || ti.offset > size - data_start || nbytes > size - data_start - ti.offset)
      c.fail("tensor '" + ti.name + "' data (" + std::to_string(nbytes) + " bytes at offset " +
             std::to_string(ti.offset) + ") runs past the end of the file");
  }

  for (const auto& ti : infos) {
    if (ends_with(ti.name, ".counts") && !by_name.count(ti.name.substr(0, ti.name.size() - 7) + ".in_sum2"))
      c.fail("tensor '" + ti.name + "' has no matching .in_sum2");
    if (!ends_with(ti.name, ".in_sum2")) continue;  // .counts handled below; .in_sum and others ignored
    const std::string base = ti.name.substr(0, ti.name.size() - 8);
    if (base.empty()) c.fail("tensor '" + ti.name + "' has an empty entry name");
    auto ci = by_name.find(base + ".counts");
    if (ci == by_name.end()) c.fail("tensor '" + ti.name + "' has no matching " + base + ".counts");
    const TensorInfo& cn = infos[ci->second];
    const uint64_t n_in = ti.ne[0], n_mat = ti.ne[1];
    if (n_in == 0 || n_mat == 0 || ti.ne[2] != 1 || ti.ne[3] != 1)
      c.fail("tensor '" + ti.name + "' has shape " + shape_of(ti) + ", expected [n_in > 0, n_mat > 0]");
    if (n_mat > uint64_t(kMaxMatrices))
      c.fail("tensor '" + ti.name + "' has an absurd matrix count " + std::to_string(n_mat));
    if (cn.ne[0] != 1 || cn.ne[1] != n_mat || cn.ne[2] != 1 || cn.ne[3] != 1)
      c.fail("tensor '" + cn.name + "' has shape " + shape_of(cn) + ", expected [1, " + std::to_string(n_mat) +
             "] to match " + ti.name);
    ImatrixEntry e;
    e.n_in = int64_t(n_in);
    const uint8_t* sums = data + data_start + ti.offset;
    e.in_sum2.reserve(size_t(n_mat));
    for (uint64_t m = 0; m < n_mat; ++m)
      e.in_sum2.push_back(load_values(sums + m * n_in * 4, n_in, false, c, ti.name, m * n_in));
    e.counts = load_values(data + data_start + cn.offset, n_mat, true, c, cn.name, 0);
    out.entries.emplace(base, std::move(e));
  }
  return out;
}

Imatrix read_dat(const uint8_t* data, size_t size, const std::string& path) {
  Cursor c(data, size, path + ": not a GGUF file, and as a legacy .dat imatrix");
  const int32_t n_entries = c.i32("the entry count");
  // Each entry takes at least 12 bytes (name length, ncall, nval) plus a 1-byte name.
  if (n_entries < 0 || uint64_t(n_entries) > c.left() / 13)
    c.fail("entry count " + std::to_string(n_entries) + " does not fit in the file");
  Imatrix out;
  for (int32_t i = 0; i < n_entries; ++i) {
    const int32_t len = c.i32("a name length");
    if (len <= 0 || uint64_t(len) > c.left())
      c.fail("entry " + std::to_string(i) + " has name length " + std::to_string(len) + " (file has " +
             std::to_string(c.left()) + " bytes left)");
    const uint8_t* np = c.take(uint64_t(len), "a name");
    std::string name(reinterpret_cast<const char*>(np), size_t(len));
    const int32_t ncall = c.i32("ncall");
    const int32_t nval = c.i32("nval");
    if (nval < 0 || uint64_t(nval) > c.left() / 4)
      c.fail("entry '" + name + "' has " + std::to_string(nval) + " values (file has " + std::to_string(c.left()) +
             " bytes left)");
    const uint8_t* vp = c.take(uint64_t(nval) * 4, "values");
    if (out.entries.count(name)) c.fail("duplicate entry '" + name + "'");
    if (nval == 0) continue;  // nothing collected: llama.cpp's GGUF writer skips these too
    ImatrixEntry e;
    e.n_in = nval;
    e.in_sum2.push_back(load_values(vp, uint64_t(nval), false, c, name, 0));
    e.counts.push_back(float(ncall));
    out.entries.emplace(std::move(name), std::move(e));
  }
  if (c.left() == 0) return out;  // older files end here
  const int32_t last_chunk = c.i32("the chunk count");
  const int32_t len = c.i32("the dataset name length");
  if (last_chunk < 0) c.fail("negative chunk count " + std::to_string(last_chunk));
  if (len < 0 || uint64_t(len) != c.left())
    c.fail("dataset name length " + std::to_string(len) + " does not match the " + std::to_string(c.left()) +
           " bytes left");
  out.chunk_count = uint32_t(last_chunk);
  const uint8_t* dp = c.take(uint64_t(len), "the dataset name");
  if (len > 0) out.datasets.emplace_back(reinterpret_cast<const char*>(dp), size_t(len));
  return out;
}

// Little-endian GGUF byte writer.
struct Writer {
  std::string buf;
  void raw(const void* p, size_t n) { buf.append(static_cast<const char*>(p), n); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void str(const std::string& s) { u64(s.size()); raw(s.data(), s.size()); }
  void pad(uint64_t alignment) { buf.resize((buf.size() + alignment - 1) / alignment * alignment, '\0'); }
  void tensor_info(const std::string& name, uint64_t ne0, uint64_t ne1, uint64_t offset) {
    str(name);
    const uint32_t n_dims = ne1 == 1 ? 1 : 2;  // ggml_n_dims: trailing 1s are not written
    u32(n_dims);
    u64(ne0);
    if (n_dims == 2) u64(ne1);
    u32(kGgmlF32);
    u64(offset);
  }
};

uint64_t padded(uint64_t n) { return (n + kDefaultAlignment - 1) / kDefaultAlignment * kDefaultAlignment; }

}  // namespace

Imatrix read_imatrix(const std::string& path) {
  MappedFile f(path);
  if (f.size() >= 4 && load_u32(f.data()) == kGgufMagic) return read_gguf(f.data(), f.size(), path);
  if (f.size() < 4) throw Error(path + ": not an imatrix file (" + std::to_string(f.size()) + " bytes)");
  return read_dat(f.data(), f.size(), path);
}

void write_imatrix_gguf(const std::string& path, const Imatrix& m) {
  for (const auto& [name, e] : m.entries) {
    check(!name.empty(), path + ": imatrix entry with an empty name");
    check(name.size() + 8 <= kMaxTensorName,
          path + ": imatrix entry name '" + name + "' is too long for a GGUF tensor name (max " +
              std::to_string(kMaxTensorName - 8) + " characters)");
    check(e.n_in > 0, path + ": imatrix entry '" + name + "' has n_in " + std::to_string(e.n_in));
    check(!e.counts.empty() && e.counts.size() == e.in_sum2.size(),
          path + ": imatrix entry '" + name + "' has " + std::to_string(e.in_sum2.size()) + " matrices and " +
              std::to_string(e.counts.size()) + " counts");
    for (const auto& v : e.in_sum2)
      check(int64_t(v.size()) == e.n_in, path + ": imatrix entry '" + name + "' has a matrix of " +
                                             std::to_string(v.size()) + " values, expected n_in " +
                                             std::to_string(e.n_in));
  }
  Writer w;
  w.u32(kGgufMagic);
  w.u32(kGgufVersion);
  w.u64(2 * m.entries.size());
  w.u64(4);
  w.str("general.type");
  w.u32(kString);
  w.str("imatrix");
  w.str("imatrix.datasets");
  w.u32(kArray);
  w.u32(kString);
  w.u64(m.datasets.size());
  for (const auto& d : m.datasets) w.str(d);
  w.str("imatrix.chunk_count");
  w.u32(kU32);
  w.u32(m.chunk_count);
  w.str("imatrix.chunk_size");
  w.u32(kU32);
  w.u32(m.chunk_size);
  // Tensor infos in llama.cpp's order: entries by name, each in_sum2 then counts; offsets padded.
  uint64_t offset = 0;
  for (const auto& [name, e] : m.entries) {
    const uint64_t n_mat = e.counts.size();
    w.tensor_info(name + ".in_sum2", uint64_t(e.n_in), n_mat, offset);
    offset += padded(uint64_t(e.n_in) * n_mat * 4);
    w.tensor_info(name + ".counts", 1, n_mat, offset);
    offset += padded(n_mat * 4);
  }
  w.pad(kDefaultAlignment);
  for (const auto& [name, e] : m.entries) {
    for (const auto& v : e.in_sum2) w.raw(v.data(), v.size() * 4);
    w.pad(kDefaultAlignment);
    w.raw(e.counts.data(), e.counts.size() * 4);
    w.pad(kDefaultAlignment);
  }
  io::write_file_atomic(path, w.buf);
}

namespace {

// "12" -> 12 normalised; anything but 1-6 digits -> "".
std::string layer_index(std::string_view s) {
  if (s.empty() || s.size() > 6) return "";
  int v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return "";
    v = v * 10 + (ch - '0');
  }
  return std::to_string(v);
}

struct NameMap { std::string_view from, to; };

// GGUF per-block tensor names (gemma4-architecture.md §9.3) -> canonical module.
constexpr NameMap kGgufModules[] = {
    {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"}, {"ffn_gate_inp", "router.proj"},
    {"ffn_gate_up_exps", "experts.gate_up"}, {"ffn_gate_exps", "experts.gate_up"},
    {"ffn_up_exps", "experts.gate_up"}, {"ffn_down_exps", "experts.down"},
    {"attn_norm", "input_layernorm"}, {"ffn_norm", "pre_feedforward_layernorm"},
    {"pre_ffw_norm_2", "pre_feedforward_layernorm_2"},
};

// Checkpoint (HF / MLX) per-layer paths -> canonical module.
constexpr NameMap kCheckpointModules[] = {
    {"self_attn.q_proj", "self_attn.q_proj"}, {"self_attn.k_proj", "self_attn.k_proj"},
    {"self_attn.v_proj", "self_attn.v_proj"}, {"self_attn.o_proj", "self_attn.o_proj"},
    {"mlp.gate_proj", "mlp.gate_proj"}, {"mlp.up_proj", "mlp.up_proj"},
    {"mlp.down_proj", "mlp.down_proj"}, {"router.proj", "router.proj"},
    {"experts.gate_up_proj", "experts.gate_up"}, {"experts.switch_glu.gate_proj", "experts.gate_up"},
    {"experts.switch_glu.up_proj", "experts.gate_up"}, {"experts.gate_proj", "experts.gate_up"},
    {"experts.up_proj", "experts.gate_up"}, {"experts.down_proj", "experts.down"},
    {"experts.switch_glu.down_proj", "experts.down"},
    {"input_layernorm", "input_layernorm"}, {"pre_feedforward_layernorm", "pre_feedforward_layernorm"},
    {"pre_feedforward_layernorm_2", "pre_feedforward_layernorm_2"},
};

template <size_t N>
std::string map_layer(std::string_view rest, const NameMap (&table)[N]) {
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return "";
  const std::string n = layer_index(rest.substr(0, dot));
  if (n.empty()) return "";
  const std::string_view module = rest.substr(dot + 1);
  for (const auto& e : table)
    if (e.from == module) return "layers." + n + "." + std::string(e.to);
  return "";
}

}  // namespace

std::string canonical_key(std::string_view name) {
  if (ends_with(name, ".weight")) name.remove_suffix(7);
  if (name.substr(0, 4) == "blk.") return map_layer(name.substr(4), kGgufModules);
  if (name == "token_embd") return "embed_tokens";
  if (name == "output") return "lm_head";
  // Checkpoint prefixes, first match wins (mlx-quant-format.md §3.4).
  for (std::string_view p : {"model.language_model.model.", "model.language_model.", "language_model.model.",
                             "language_model.", "model."}) {
    if (name.substr(0, p.size()) == p) { name.remove_prefix(p.size()); break; }
  }
  if (name == "embed_tokens" || name == "lm_head") return std::string(name);
  if (name.substr(0, 7) == "layers.") return map_layer(name.substr(7), kCheckpointModules);
  return "";
}

std::map<std::string, Importance> importance_by_canonical(const Imatrix& m) {
  std::map<std::string, std::vector<std::pair<const std::string*, const ImatrixEntry*>>> groups;
  for (const auto& [name, e] : m.entries) {
    check(e.n_in > 0 && !e.counts.empty() && e.counts.size() == e.in_sum2.size(),
          "imatrix entry '" + name + "': " + std::to_string(e.in_sum2.size()) + " matrices, " +
              std::to_string(e.counts.size()) + " counts, n_in " + std::to_string(e.n_in));
    for (const auto& v : e.in_sum2)
      check(int64_t(v.size()) == e.n_in, "imatrix entry '" + name + "': a matrix of " +
                                             std::to_string(v.size()) + " values, expected n_in " +
                                             std::to_string(e.n_in));
    std::string key = canonical_key(name);
    if (!key.empty()) groups[key].emplace_back(&name, &e);
  }
  std::map<std::string, Importance> out;
  for (const auto& [key, members] : groups) {
    const ImatrixEntry& first = *members[0].second;
    for (const auto& [name, e] : members)
      check(e->n_in == first.n_in && e->counts.size() == first.counts.size(),
            "imatrix entries '" + *members[0].first + "' and '" + *name + "' both map to " + key +
                " but differ in shape ([" + std::to_string(first.n_in) + ", " +
                std::to_string(first.counts.size()) + "] vs [" + std::to_string(e->n_in) + ", " +
                std::to_string(e->counts.size()) + "])");
    Importance imp;
    for (size_t mat = 0; mat < first.counts.size(); ++mat) {
      std::vector<float> v;
      for (const auto& [name, e] : members) {
        const float count = e->counts[mat];
        if (!(count > 0) || !std::isfinite(count)) continue;  // never routed: no information
        const std::vector<float>& s = e->in_sum2[mat];
        if (v.empty()) v.assign(s.size(), -std::numeric_limits<float>::infinity());
        for (size_t j = 0; j < s.size(); ++j) v[j] = std::max(v[j], s[j] / count);
      }
      if (!v.empty()) imp.per_matrix.push_back(std::move(v));
    }
    if (!imp.per_matrix.empty()) out.emplace(key, std::move(imp));
  }
  return out;
}

}  // namespace mlxq::quant
