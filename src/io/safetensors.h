// Safetensors reading: one memory-mapped file with a fully validated header, and a Checkpoint
// that gathers the shards of a model directory (model.safetensors, or the shards named by
// model.safetensors.index.json). Tensor data is never copied: TensorInfo points into the map.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace mlxq::io {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the file's mapping
  size_t nbytes = 0;
  const std::string* file = nullptr;  // path of the shard holding it

  int64_t numel() const;
  std::string shape_str() const;  // "[2048, 256]"
};

// One .safetensors file. The constructor checks: header length inside the file, valid JSON,
// known dtypes, byte count = dtype size x shape product, offsets inside the data section and
// not overlapping. Any violation throws Error naming the file (and tensor).
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return map_.path(); }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  MappedFile map_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory (or of one .safetensors file given directly).
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& path);
  const std::string& dir() const { return dir_; }
  const TensorInfo* find(const std::string& name) const;  // nullptr when absent
  const std::map<std::string, const TensorInfo*>& tensors() const { return index_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // Where a missing tensor would have been looked for (index.json or the single file).
  const std::string& source() const { return source_; }
  uint64_t total_bytes() const;

 private:
  std::string dir_, source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
};

}  // namespace mlxq::io
