// CheckpointWriter: streams tensors into sorted safetensors shards (at most 5 GiB each, with
// model.safetensors.index.json), plus side files such as config.json. Everything goes to a hidden
// temporary directory beside the output, renamed into place by commit(); an exception or an
// interrupted run never leaves something at the output path that looks like a checkpoint.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace mlxq::io {

struct TensorSpec {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};

// Receives a tensor's bytes in order, in as many pieces as the producer likes.
using ByteSink = std::function<void(const void* data, size_t n)>;
// Writes exactly spec.nbytes() bytes of `spec` into the sink.
using TensorProducer = std::function<void(const TensorSpec& spec, const ByteSink& sink)>;

struct ShardOptions {
  uint64_t max_shard_bytes = 5ull << 30;  // the MLX / HF limit
  bool pad_header = false;                // HF pads the JSON header to 8 bytes; MLX does not
  std::map<std::string, std::string> metadata = {{"format", "mlx"}};
};

class CheckpointWriter {
 public:
  // Refuses an existing `out_dir` unless `overwrite`.
  CheckpointWriter(const std::string& out_dir, bool overwrite);
  ~CheckpointWriter();  // removes the temporary directory unless committed
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  void write_text_file(const std::string& name, const std::string& contents);
  // Sorts `specs` by name, packs them into shards and calls `produce` once per tensor in file
  // order. Returns the number of shards written.
  int write_tensors(std::vector<TensorSpec> specs, const ShardOptions& opt,
                    const TensorProducer& produce);
  void commit();  // renames the temporary directory to out_dir
  const std::string& temp_dir() const { return tmp_; }

 private:
  std::string out_, tmp_;
  bool overwrite_ = false, committed_ = false;
};

// Writes a whole file through a temporary name and rename.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace mlxq::io
