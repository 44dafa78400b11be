// The interleaved weights file: writer (`mlxq repack`) and loader (see interleaved_file.h).
#include "model/gemma4/interleaved_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "kernels/interleaved.h"
#include "kernels/matmul.h"

namespace mlxq::model::gemma4 {

namespace fs = std::filesystem;
using kernels::ExpertStack;
using kernels::Matrix;
using json = nlohmann::json;

namespace {

constexpr char kMagic[8] = {'M', 'L', 'X', 'Q', 'I', 'L', '1', '6'};
constexpr uint32_t kVersion = 2;  // 2: 3- and 5-bit codes placed as whole fields (interleaved.h)
constexpr size_t kAlign = 4096;
constexpr size_t kPreamble = 24;  // magic, version, reserved, header length
constexpr int64_t kMaxK = 64 * kernels::q8::kMaxBlocks;

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Every weight matrix of w as an expert stack (plain matrices as stacks of one); `fn` may set
// first.il, which is copied back.
void for_each_stack(Gemma4Weights& w, const std::function<void(ExpertStack&)>& fn) {
  auto one = [&](Matrix& m) {
    if (m.rows == 0) return;  // absent (v_proj of a K=V layer)
    ExpertStack s;
    s.first = m;
    s.n_experts = 1;
    s.data_stride = m.row_bytes * size_t(m.rows);
    s.sb_stride = m.sb_row_bytes * size_t(m.rows);
    fn(s);
    m.il = s.first.il;
  };
  one(w.embed_tokens);
  for (auto& L : w.layers) {
    for (Matrix* m : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.mlp_gate, &L.mlp_up, &L.mlp_down, &L.router_proj})
      one(*m);
    for (ExpertStack* s : {&L.expert_gate, &L.expert_up, &L.expert_down}) fn(*s);
  }
}

// Whether a stack is stored interleaved: the layout takes it and it is a whole tensor (the HF
// layout's gate/up halves are dense anyway).
bool stored(const ExpertStack& s) { return s.first.name && kernels::il16::supported(s.first, kMaxK); }

// FNV-1a over the first and last 4 KB of [p, p + n); the pages read are dropped from the resident
// set again (the kernel maps the page cache's 2 MB folios whole, so even a 4 KB read would keep
// 2 MB resident; dropping part of such a mapping drops all of it). Only whole pages holding bytes
// of the span are dropped: they lie inside the file's mapping, whereas rounding out to 2 MB could
// reach a neighbouring anonymous mapping, which MADV_DONTNEED would zero.
uint64_t fingerprint(uint64_t h, const uint8_t* p, size_t n) {
  const size_t span = std::min<size_t>(4096, n);
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  for (const uint8_t* q : {p, p + n - span}) {
    for (size_t i = 0; i < span; ++i) h = (h ^ q[i]) * 1099511628211ull;
    const uintptr_t b = uintptr_t(q) & ~(page - 1), e = (uintptr_t(q) + span + page - 1) & ~(page - 1);
    release_pages(reinterpret_cast<const void*>(b), size_t(e - b));
  }
  return h;
}

std::string stack_fingerprint(const ExpertStack& s) {
  uint64_t h = 14695981039346656037ull;
  const size_t n = size_t(s.n_experts);
  h = fingerprint(h, s.first.data, n * s.data_stride);
  h = fingerprint(h, s.first.scales, n * s.sb_stride);
  h = fingerprint(h, s.first.biases, n * s.sb_stride);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

struct ShardStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};
ShardStamp stamp(const std::string& path) {
  struct stat st {};
  check(::stat(path.c_str(), &st) == 0, path + ": cannot stat: " + std::strerror(errno));
  return {uint64_t(st.st_size), int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};

void write_all(FILE* f, const void* p, size_t n, const std::string& path) {
  if (n && std::fwrite(p, 1, n, f) != n) throw Error(path + ": write failed: " + std::strerror(errno));
}

}  // namespace

std::string default_interleaved_path(const io::Checkpoint& ckpt) {
  return (fs::path(ckpt.dir().empty() ? "." : ckpt.dir()) / "mlxq-interleaved.bin").string();
}

RepackStats write_interleaved(const io::Checkpoint& ckpt, const Gemma4Weights& weights, const std::string& path,
                              ThreadPool& pool) {
  Gemma4Weights w = weights;  // only views: cheap to copy
  json header;
  header["format"] = "mlxq-il16";
  header["version"] = kVersion;
  for (const auto& f : ckpt.files()) {
    const ShardStamp st = stamp(f->path());
    header["sources"][fs::path(f->path()).filename().string()] = {{"size", st.size}, {"mtime_ns", st.mtime_ns}};
  }
  std::vector<ExpertStack> stacks;
  size_t offset = 0;  // from the data start, fixed up below
  for_each_stack(w, [&](ExpertStack& s) {
    if (!stored(s)) return;
    const size_t bytes = size_t(s.n_experts) * kernels::il16::matrix_bytes(s.first);
    header["tensors"][*s.first.name] = {{"bits", s.first.spec.bits}, {"rows", s.first.rows},
                                        {"cols", s.first.cols},      {"experts", s.n_experts},
                                        {"offset", offset},          {"bytes", bytes},
                                        {"fingerprint", stack_fingerprint(s)}};
    stacks.push_back(s);
    offset = round_up(offset + bytes, kAlign);
  });
  check(!stacks.empty(), ckpt.source() + ": no matrix can be stored interleaved (needs affine group-64 weights "
                                         "with bf16 scales, rows a multiple of 16)");
  // Offsets in the header are from the file start: the data starts after the padded header, whose
  // length does not depend on the offsets' digits once they are written as fixed-width numbers.
  const size_t data_start = round_up(kPreamble + header.dump().size() + 64 * stacks.size() + 64, kAlign);
  for (auto& [name, t] : header["tensors"].items()) t["offset"] = t["offset"].get<size_t>() + data_start;
  const std::string text = header.dump();
  check(kPreamble + text.size() <= data_start, path + ": header grew past its reserved space");

  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    std::unique_ptr<FILE, FileCloser> f(std::fopen(tmp.c_str(), "wb"));
    if (!f) throw Error(tmp + ": cannot create: " + std::strerror(errno));
    std::vector<uint8_t> pre(data_start, 0);
    std::memcpy(pre.data(), kMagic, 8);
    std::memcpy(pre.data() + 8, &kVersion, 4);
    const uint64_t hlen = text.size();
    std::memcpy(pre.data() + 16, &hlen, 8);
    std::memcpy(pre.data() + kPreamble, text.data(), text.size());
    write_all(f.get(), pre.data(), pre.size(), tmp);
    size_t at = data_start;
    std::vector<uint8_t> buf;
    for (const ExpertStack& s : stacks) {
      const size_t gb = s.first.il_group_bytes();
      const int64_t groups = s.first.rows / kernels::il16::kRows;
      const int64_t per_chunk = std::max<int64_t>(1, int64_t((size_t(32) << 20) / gb));
      for (int64_t e = 0; e < s.n_experts; ++e) {
        const Matrix m = s.expert(e);
        for (int64_t g0 = 0; g0 < groups; g0 += per_chunk) {
          const int64_t n = std::min(per_chunk, groups - g0);
          buf.resize(size_t(n) * gb);
          pool.parallel_for(size_t(n), [&](size_t b, size_t end, int) {
            if (b < end) kernels::il16::pack(m, g0 + int64_t(b), g0 + int64_t(end), buf.data() + b * gb);
          });
          write_all(f.get(), buf.data(), buf.size(), tmp);
          at += buf.size();
        }
      }
      const size_t pad = round_up(at, kAlign) - at;
      const std::vector<uint8_t> zeros(pad, 0);
      write_all(f.get(), zeros.data(), pad, tmp);
      at += pad;
      // The source codes are done with: keep the resident set near one tensor.
      release_pages(s.first.data, size_t(s.n_experts) * s.data_stride);
      release_pages(s.first.scales, size_t(s.n_experts) * s.sb_stride);
      release_pages(s.first.biases, size_t(s.n_experts) * s.sb_stride);
    }
    if (std::fflush(f.get()) != 0 || ::fsync(::fileno(f.get())) != 0)
      throw Error(tmp + ": write failed: " + std::strerror(errno));
    f.reset();
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw Error(path + ": cannot rename " + tmp + " into place: " + ec.message());
    return {int64_t(stacks.size()), uint64_t(at)};
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

std::unique_ptr<MappedFile> attach_interleaved(const io::Checkpoint& ckpt, Gemma4Weights& weights,
                                               const std::string& path) {
  Gemma4Weights w = weights;  // weights change only once the whole file checked out
  auto map = std::make_unique<MappedFile>(path);
  const uint8_t* p = map->data();
  const size_t size = map->size();
  check(size >= kPreamble && std::memcmp(p, kMagic, 8) == 0, path + ": not an mlxq interleaved weights file");
  uint32_t version = 0;
  uint64_t hlen = 0;
  std::memcpy(&version, p + 8, 4);
  std::memcpy(&hlen, p + 16, 8);
  check(version == kVersion, path + ": version " + std::to_string(version) + ", this mlxq reads version " +
                                 std::to_string(kVersion) + " (run `mlxq repack` again)");
  check(hlen <= size - kPreamble, path + ": header length " + std::to_string(hlen) + " runs past the end of the file");
  json header;
  try {
    header = json::parse(p + kPreamble, p + kPreamble + hlen);
  } catch (const json::exception& e) {
    throw Error(path + ": header is not valid JSON: " + e.what());
  }
  try {
    for (const auto& f : ckpt.files()) {
      const std::string name = fs::path(f->path()).filename().string();
      check(header.contains("sources") && header["sources"].contains(name),
            path + ": made from another checkpoint (no record of " + name + ")");
      const ShardStamp st = stamp(f->path());
      const json& rec = header["sources"][name];
      check(rec.at("size").get<uint64_t>() == st.size && rec.at("mtime_ns").get<int64_t>() == st.mtime_ns,
            path + ": " + f->path() + " changed since the file was written (size or modification time)");
    }
    const json& tensors = header.at("tensors");
    for_each_stack(w, [&](ExpertStack& s) {
      if (!stored(s)) return;
      const std::string& name = *s.first.name;
      check(tensors.contains(name), path + ": holds no copy of tensor '" + name + "'");
      const json& t = tensors[name];
      const size_t bytes = size_t(s.n_experts) * kernels::il16::matrix_bytes(s.first);
      check(t.at("bits").get<int>() == s.first.spec.bits && t.at("rows").get<int64_t>() == s.first.rows &&
                t.at("cols").get<int64_t>() == s.first.cols && t.at("experts").get<int64_t>() == s.n_experts &&
                t.at("bytes").get<size_t>() == bytes,
            path + ": tensor '" + name + "' has another shape or bit width than in the checkpoint");
      const size_t off = t.at("offset").get<size_t>();
      check(off % 64 == 0 && off <= size && bytes <= size - off,
            path + ": tensor '" + name + "' lies outside the file (truncated?)");
      check(t.at("fingerprint").get<std::string>() == stack_fingerprint(s),
            path + ": tensor '" + name + "' does not match the checkpoint's bytes");
      s.first.il = p + off;
      s.il_stride = kernels::il16::matrix_bytes(s.first);
    });
  } catch (const json::exception& e) {
    throw Error(path + ": malformed header: " + e.what());
  }
  weights = std::move(w);
  return map;
}

}  // namespace mlxq::model::gemma4
