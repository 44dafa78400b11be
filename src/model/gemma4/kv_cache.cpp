// KvCache sizing.
#include "model/gemma4/kv_cache.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>

#include "core/error.h"

namespace mlxq::model::gemma4 {

FloatBuffer::FloatBuffer(size_t n) : p_(static_cast<float*>(std::calloc(n + 16, sizeof(float)))), n_(n) {
  if (!p_) throw std::bad_alloc();
  data_ = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p_.get()) + 63) & ~uintptr_t(63));
}

FloatBuffer FloatBuffer::clone() const {
  FloatBuffer c(n_);
  if (n_) std::memcpy(c.data(), data(), n_ * sizeof(float));
  return c;
}

KvCache::KvCache(const Gemma4Config& cfg, int64_t max_context, int64_t max_chunk)
    : max_context_(max_context), max_chunk_(max_chunk) {
  check(max_context > 0 && max_chunk > 0, "KV cache: max_context and max_chunk must be positive");
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    Layer L;
    L.stride = cfg.layer_kv_heads(l) * cfg.layer_head_dim(l);
    L.ring = cfg.is_sliding(l) ? std::min(max_context, cfg.sliding_window - 1 + max_chunk)
                               : max_context;
    L.k = FloatBuffer(size_t(L.ring * L.stride));
    L.v = FloatBuffer(size_t(L.ring * L.stride));
    layers_.push_back(std::move(L));
  }
}

KvCache KvCache::clone() const {
  KvCache c;
  for (const Layer& L : layers_) c.layers_.push_back({L.k.clone(), L.v.clone(), L.ring, L.stride});
  c.pos_ = pos_;
  c.max_context_ = max_context_;
  c.max_chunk_ = max_chunk_;
  return c;
}

uint64_t KvCache::bytes() const {
  uint64_t n = 0;
  for (const auto& L : layers_) n += (L.k.size() + L.v.size()) * sizeof(float);
  return n;
}

uint64_t KvCache::bytes_held() const {
  uint64_t n = 0;
  for (const auto& L : layers_) n += uint64_t(std::min(pos_, L.ring)) * uint64_t(L.stride) * 2 * sizeof(float);
  return n;
}

}  // namespace mlxq::model::gemma4
