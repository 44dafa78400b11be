// Streaming, atomic checkpoint writing (see checkpoint_writer.h).
#include "io/checkpoint_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace mlxq::io {

uint64_t TensorSpec::nbytes() const {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}

namespace {

struct FileCloser { void operator()(FILE* f) const { if (f) std::fclose(f); } };

void write_all(FILE* f, const void* p, size_t n, const std::string& path) {
  if (n && std::fwrite(p, 1, n, f) != n)
    throw Error(path + ": write failed: " + std::strerror(errno));
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::unique_ptr<FILE, FileCloser> f(std::fopen(tmp.c_str(), "wb"));
    if (!f) throw Error(tmp + ": cannot create: " + std::strerror(errno));
    write_all(f.get(), contents.data(), contents.size(), tmp);
    if (std::fflush(f.get()) != 0) throw Error(tmp + ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(path + ": cannot rename into place");
  }
}

CheckpointWriter::CheckpointWriter(const std::string& out_dir, bool overwrite)
    : out_(out_dir), overwrite_(overwrite) {
  fs::path out = fs::path(out_dir);
  if (out.filename().empty()) out = out.parent_path();
  out_ = out.string();
  check(!out_.empty(), "output directory path is empty");
  if (fs::exists(out) && !overwrite)
    throw Error(out_ + ": already exists (pass --force to overwrite)");
  fs::path parent = out.parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  fs::create_directories(parent, ec);
  std::string tmp_name = ".";  // hidden, and never named like a checkpoint
  tmp_name += out.filename().string();
  tmp_name += ".tmp-";
  tmp_name += std::to_string(::getpid());
  tmp_ = (parent / tmp_name).string();
  fs::remove_all(tmp_, ec);
  if (!fs::create_directory(tmp_, ec) || ec)
    throw Error(tmp_ + ": cannot create temporary output directory: " + ec.message());
}

CheckpointWriter::~CheckpointWriter() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void CheckpointWriter::write_text_file(const std::string& name, const std::string& contents) {
  const std::string p = (fs::path(tmp_) / name).string();
  std::unique_ptr<FILE, FileCloser> f(std::fopen(p.c_str(), "wb"));
  if (!f) throw Error(p + ": cannot create: " + std::strerror(errno));
  write_all(f.get(), contents.data(), contents.size(), p);
}

int CheckpointWriter::write_tensors(std::vector<TensorSpec> specs, const ShardOptions& opt,
                                    const TensorProducer& produce) {
  std::sort(specs.begin(), specs.end(),
            [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
  for (size_t i = 1; i < specs.size(); ++i)
    check(specs[i].name != specs[i - 1].name, "duplicate tensor name '" + specs[i].name + "'");
  // Greedy bin packing in sorted order: a new shard starts when the next tensor would overflow.
  std::vector<std::vector<const TensorSpec*>> shards(1);
  uint64_t cur = 0, total = 0;
  for (const auto& s : specs) {
    const uint64_t n = s.nbytes();
    if (!shards.back().empty() && cur + n > opt.max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(&s);
    cur += n;
    total += n;
  }
  const int n_shards = int(shards.size());
  auto shard_name = [&](int i) {
    if (n_shards == 1) return std::string("model.safetensors");
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i + 1, n_shards);
    return std::string(buf);
  };
  json weight_map = json::object();
  std::vector<char> buf(8 << 20);
  for (int si = 0; si < n_shards; ++si) {
    const std::string fname = shard_name(si);
    const std::string path = (fs::path(tmp_) / fname).string();
    ordered_json header = ordered_json::object();
    if (!opt.metadata.empty()) {
      ordered_json md = ordered_json::object();
      for (const auto& [k, v] : opt.metadata) md[k] = v;
      header["__metadata__"] = md;
    }
    uint64_t off = 0;
    // MLX writes each entry's keys sorted (data_offsets, dtype, shape); torch's safetensors
    // writes dtype, shape, data_offsets. Readers accept both; writing the same bytes as the
    // reference keeps converted headers comparable.
    const bool mlx_order = opt.metadata.count("format") && opt.metadata.at("format") == "mlx";
    for (const TensorSpec* s : shards[si]) {
      ordered_json e = ordered_json::object();
      if (mlx_order) e["data_offsets"] = {off, off + s->nbytes()};
      e["dtype"] = dtype_name(s->dtype);
      e["shape"] = s->shape;
      if (!mlx_order) e["data_offsets"] = {off, off + s->nbytes()};
      header[s->name] = e;
      off += s->nbytes();
      weight_map[s->name] = fname;
    }
    std::string h = header.dump();
    if (opt.pad_header) h.append((8 - h.size() % 8) % 8, ' ');
    std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
    if (!f) throw Error(path + ": cannot create: " + std::strerror(errno));
    std::setvbuf(f.get(), buf.data(), _IOFBF, buf.size());
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
    write_all(f.get(), len, 8, path);
    write_all(f.get(), h.data(), h.size(), path);
    for (const TensorSpec* s : shards[si]) {
      uint64_t written = 0;
      produce(*s, [&](const void* p, size_t n) {
        written += n;
        check(written <= s->nbytes(), "producer wrote too many bytes for tensor '" + s->name + "'");
        write_all(f.get(), p, n, path);
      });
      check(written == s->nbytes(), "producer wrote " + std::to_string(written) + " of " +
                                        std::to_string(s->nbytes()) + " bytes for '" + s->name + "'");
    }
    if (std::fflush(f.get()) != 0) throw Error(path + ": write failed: " + std::strerror(errno));
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_text_file("model.safetensors.index.json", index.dump(2) + "\n");
  return n_shards;
}

void CheckpointWriter::commit() {
  std::error_code ec;
  if (fs::exists(out_)) {
    check(overwrite_, out_ + ": already exists (pass --force to overwrite)");
    fs::remove_all(out_, ec);
    if (ec) throw Error(out_ + ": cannot remove the old output: " + ec.message());
  }
  fs::rename(tmp_, out_, ec);
  if (ec) throw Error(out_ + ": cannot rename the finished output into place: " + ec.message());
  committed_ = true;
}

}  // namespace mlxq::io
