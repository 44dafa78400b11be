// The interleaved weights file: the 16-row interleaved copy (kernels/interleaved.h) of every
// quantized matrix of a checkpoint that the layout takes, written once beside the checkpoint
// (`mlxq repack`) and memory-mapped at load, so decode and prefill read one stream per 16 rows
// and never touch the original codes (which would double the resident memory).
//
// File layout: "MLXQIL16", u32 version, u32 0, u64 header length, a JSON header, zero padding to
// 4096, then each tensor's interleaved bytes at a 4096-aligned offset from the file start. The
// header records, per source shard, its size and modification time, and per tensor its shape,
// bits, offset, length and a fingerprint of the checkpoint bytes it came from (first and last
// 4 KB of codes, scales and biases). A file that disagrees with the checkpoint is refused with a
// message naming what differs; it is never half-written (temp file, then rename).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "model/gemma4/weights.h"

namespace mlxq::model::gemma4 {

// Where `mlxq repack` writes and loading looks by default: <checkpoint dir>/mlxq-interleaved.bin.
std::string default_interleaved_path(const io::Checkpoint& ckpt);

struct RepackStats {
  int64_t tensors = 0;  // tensors stored interleaved
  uint64_t bytes = 0;   // file size
};
// Writes the interleaved copy of every matrix of w the layout takes to `path`.
RepackStats write_interleaved(const io::Checkpoint& ckpt, const Gemma4Weights& w, const std::string& path,
                              ThreadPool& pool);

// Maps `path`, checks it against ckpt, and points every matrix of w it holds at its copy. Throws
// Error naming the file and the first disagreement (version, shard size or time, tensor shape,
// bits or fingerprint, a tensor past the end of the file).
std::unique_ptr<MappedFile> attach_interleaved(const io::Checkpoint& ckpt, Gemma4Weights& w, const std::string& path);

}  // namespace mlxq::model::gemma4
