// Safetensors header parsing and validation; shard discovery through index.json.
#include "io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mlxq::io {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {
constexpr uint64_t kMaxHeader = 256ull << 20;  // a header over 256 MiB is corrupt, not big

uint64_t read_u64le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {
  const std::string& f = map_.path();
  check(map_.size() >= 8, f + ": truncated: " + std::to_string(map_.size()) +
                              " bytes, too short for a safetensors header length");
  const uint64_t hlen = read_u64le(map_.data());
  check(hlen <= map_.size() - 8 && hlen <= kMaxHeader,
        f + ": header length " + std::to_string(hlen) + " runs past the end of the file (" +
            std::to_string(map_.size()) + " bytes)");
  const char* hp = reinterpret_cast<const char*>(map_.data() + 8);
  json header;
  try {
    header = json::parse(hp, hp + hlen);
  } catch (const json::exception& e) {
    throw Error(f + ": header is not valid JSON: " + e.what());
  }
  check(header.is_object(), f + ": header is not a JSON object");
  const uint8_t* data = map_.data() + 8 + hlen;
  const uint64_t data_size = map_.size() - 8 - hlen;

  struct Span { uint64_t b, e; const std::string* name; };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      check(v.is_object(), f + ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        check(m.value().is_string(), f + ": __metadata__." + m.key() + " is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = f + ": tensor '" + name + "'";
    check(v.is_object(), where + ": entry is not an object");
    check(v.contains("dtype") && v["dtype"].is_string(), where + ": missing or non-string dtype");
    check(v.contains("shape") && v["shape"].is_array(), where + ": missing or non-array shape");
    check(v.contains("data_offsets") && v["data_offsets"].is_array() &&
              v["data_offsets"].size() == 2,
          where + ": data_offsets must be an array of two integers");
    TensorInfo t;
    t.name = name;
    const std::string ds = v["dtype"].get<std::string>();
    check(parse_dtype(ds, &t.dtype), where + ": unknown dtype '" + ds + "'");
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      check(d.is_number_unsigned(), where + ": shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      check(dim == 0 || numel <= std::numeric_limits<uint64_t>::max() / dim / 8,
            where + ": shape product overflows");
      numel *= dim;
      t.shape.push_back(int64_t(dim));
    }
    for (const json& o : v["data_offsets"])
      check(o.is_number_unsigned(), where + ": data_offsets must be non-negative integers");
    const uint64_t b = v["data_offsets"][0].get<uint64_t>();
    const uint64_t e = v["data_offsets"][1].get<uint64_t>();
    check(b <= e && e <= data_size,
          where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
              "] out of range of the data section (" + std::to_string(data_size) + " bytes)" +
              (e > data_size ? "; the file may be truncated" : ""));
    const uint64_t want = numel * dtype_size(t.dtype);
    check(e - b == want, where + ": " + std::to_string(e - b) + " bytes for dtype " + ds +
                             " and shape " + t.shape_str() + ", expected " + std::to_string(want));
    t.data = data + b;
    t.nbytes = size_t(e - b);
    auto [pos, ok] = tensors_.emplace(name, std::move(t));
    pos->second.file = &map_.path();
    spans.push_back({b, e, &pos->first});
    (void)ok;
  }
  std::sort(spans.begin(), spans.end(), [](const Span& x, const Span& y) {
    return x.b != y.b ? x.b < y.b : x.e < y.e;
  });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].b == spans[i].e || spans[i - 1].b == spans[i - 1].e) continue;  // empty tensors
    check(spans[i].b >= spans[i - 1].e, f + ": tensors '" + *spans[i - 1].name + "' and '" +
                                            *spans[i].name + "' overlap in the data section");
  }
}

Checkpoint::Checkpoint(const std::string& path) {
  std::vector<std::string> shard_paths;
  std::map<std::string, std::string> weight_map;
  if (fs::is_regular_file(path)) {
    dir_ = fs::path(path).parent_path().string();
    source_ = path;
    shard_paths.push_back(path);
  } else {
    check(fs::is_directory(path), path + ": no such checkpoint directory or file");
    dir_ = path;
    const fs::path idx = fs::path(path) / "model.safetensors.index.json";
    const fs::path single = fs::path(path) / "model.safetensors";
    if (fs::exists(idx)) {
      source_ = idx.string();
      std::ifstream in(idx);
      json j;
      try {
        j = json::parse(in);
      } catch (const json::exception& e) {
        throw Error(source_ + ": not valid JSON: " + e.what());
      }
      check(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
            source_ + ": missing object field 'weight_map'");
      std::vector<std::string> names;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        check(it.value().is_string(), source_ + ": weight_map['" + it.key() + "'] is not a string");
        const std::string shard = it.value().get<std::string>();
        check(shard.find('/') == std::string::npos && shard != ".." && !shard.empty(),
              source_ + ": weight_map['" + it.key() + "'] names a file outside the directory");
        weight_map[it.key()] = shard;
        if (std::find(names.begin(), names.end(), shard) == names.end()) names.push_back(shard);
      }
      std::sort(names.begin(), names.end());
      for (const auto& n : names) {
        const fs::path p = fs::path(path) / n;
        check(fs::exists(p), source_ + ": names shard '" + n + "', which does not exist");
        shard_paths.push_back(p.string());
      }
    } else if (fs::exists(single)) {
      source_ = single.string();
      shard_paths.push_back(single.string());
    } else {
      throw Error(path + ": neither model.safetensors nor model.safetensors.index.json found");
    }
  }
  for (const auto& p : shard_paths) files_.push_back(std::make_unique<SafetensorsFile>(p));
  for (const auto& f : files_) {
    for (const auto& [name, t] : f->tensors()) {
      auto [it, ok] = index_.emplace(name, &t);
      check(ok, f->path() + ": tensor '" + name + "' also appears in " + *it->second->file);
    }
  }
  for (const auto& [name, shard] : weight_map) {
    auto it = index_.find(name);
    check(it != index_.end(), source_ + ": tensor '" + name + "' is listed in shard '" + shard +
                                  "' but that file does not contain it");
    check(fs::path(*it->second->file).filename() == shard,
          source_ + ": tensor '" + name + "' is listed in '" + shard + "' but found in " +
              *it->second->file);
  }
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, t] : index_) n += t->nbytes;
  return n;
}

}  // namespace mlxq::io
