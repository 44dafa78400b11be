// KvCache sizing.
#include "model/gemma4/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace mlxq::model::gemma4 {

KvCache::KvCache(const Gemma4Config& cfg, int64_t max_context, int64_t max_chunk)
    : max_context_(max_context), max_chunk_(max_chunk) {
  check(max_context > 0 && max_chunk > 0, "KV cache: max_context and max_chunk must be positive");
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    Layer L;
    L.stride = cfg.layer_kv_heads(l) * cfg.layer_head_dim(l);
    L.ring = cfg.is_sliding(l) ? std::min(max_context, cfg.sliding_window - 1 + max_chunk)
                               : max_context;
    L.k.assign(size_t(L.ring * L.stride), 0.0f);
    L.v.assign(size_t(L.ring * L.stride), 0.0f);
    layers_.push_back(std::move(L));
  }
}

KvCache KvCache::clone() const {
  KvCache c;
  c.layers_ = layers_;
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

}  // namespace mlxq::model::gemma4
