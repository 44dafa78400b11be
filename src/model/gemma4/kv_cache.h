// KvCache: per-layer f32 keys and values (post-norm, post-RoPE K; post-norm V), as the spec's
// §7 prescribes. Full layers keep every position up to max_context; sliding layers keep a ring
// of (window - 1 + max_chunk + rollback) slots, enough to hold the window behind every query of a
// chunk while the chunk's own keys are written, and to step back `rollback` positions more
// (truncate: a server slot keeps the prefix a new prompt shares). Position p lives in slot p % ring.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include "model/gemma4/config.h"

namespace mlxq::model::gemma4 {

// Zero-initialised floats from calloc: large blocks come from fresh mmap'd pages, so the cache
// costs memory (and page-zeroing time) only for the positions a session actually writes. A
// std::vector would zero all of it up front: 0.8 GB and ~0.3 s at max_context 8192 on 26b-a4b.
// data() is 64-byte aligned (calloc's blocks are not), so rows whose size is a multiple of 16
// floats never put a 512-bit load across two cache lines.
class FloatBuffer {
 public:
  FloatBuffer() = default;
  explicit FloatBuffer(size_t n);
  FloatBuffer(FloatBuffer&& o) noexcept { *this = std::move(o); }
  FloatBuffer& operator=(FloatBuffer&& o) noexcept {
    p_ = std::move(o.p_);
    data_ = std::exchange(o.data_, nullptr);
    n_ = std::exchange(o.n_, 0);
    return *this;
  }
  FloatBuffer clone() const;
  float* data() { return data_; }
  const float* data() const { return data_; }
  float& operator[](size_t i) { return data_[i]; }
  const float& operator[](size_t i) const { return data_[i]; }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> p_;  // what calloc returned
  float* data_ = nullptr;           // p_ rounded up to 64 bytes
  size_t n_ = 0;
};

class KvCache {
 public:
  struct Layer {
    FloatBuffer k, v;         // [ring, n_kv * head_dim]
    int64_t ring = 0;         // slots
    int64_t stride = 0;       // n_kv * head_dim
  };

  KvCache(const Gemma4Config& cfg, int64_t max_context, int64_t max_chunk, int64_t rollback = 0);
  KvCache(KvCache&&) = default;
  KvCache& operator=(KvCache&&) = default;
  KvCache(const KvCache&) = delete;             // a deep copy is costly: use clone()
  KvCache& operator=(const KvCache&) = delete;
  KvCache clone() const;

  int64_t pos() const { return pos_; }           // tokens already in the cache
  int64_t max_context() const { return max_context_; }
  int64_t max_chunk() const { return max_chunk_; }
  Layer& layer(int64_t l) { return layers_[size_t(l)]; }
  void advance(int64_t n) { pos_ += n; }
  void reset() { pos_ = 0; }
  // Whether the cache can go back to holding only positions [0, p): full layers always can; a
  // sliding layer only while its ring still holds the window behind position p.
  bool can_truncate(int64_t p) const;
  void truncate(int64_t p);  // throws unless can_truncate(p)
  uint64_t bytes() const;       // allocated (committed by the OS only as positions are written)
  uint64_t bytes_held() const;  // of the positions held now (a sliding layer holds at most its ring)

 private:
  KvCache() = default;
  std::vector<Layer> layers_;
  int64_t pos_ = 0, max_context_ = 0, max_chunk_ = 0, rollback_ = 0;
};

}  // namespace mlxq::model::gemma4
