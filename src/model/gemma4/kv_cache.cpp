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

KvCache::KvCache(const Gemma4Config& cfg, int64_t max_context, int64_t max_chunk, int64_t rollback)
    : max_context_(max_context), max_chunk_(max_chunk), rollback_(rollback) {
  check(max_context > 0 && max_chunk > 0 && rollback >= 0,
        "KV cache: max_context and max_chunk must be positive, rollback not negative");
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    Layer L;
    L.stride = cfg.layer_kv_heads(l) * cfg.layer_head_dim(l);
    L.ring = cfg.is_sliding(l) ? std::min(max_context, cfg.sliding_window - 1 + max_chunk + rollback)
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
  c.rollback_ = rollback_;
  return c;
}

// After truncating to p, the next chunk's first query (position p) reads keys from p - window + 1,
// which a ring of R slots still holds while pos_ - R <= p - window + 1 (a ring as long as the
// context holds everything). Slots between p and pos_ hold stale positions, overwritten before
// any query reaches them.
bool KvCache::can_truncate(int64_t p) const {
  if (p < 0 || p > pos_) return false;
  if (p == pos_ || p == 0) return true;
  for (const Layer& L : layers_) {
    if (L.ring >= max_context_) continue;
    const int64_t window = L.ring - max_chunk_ - rollback_ + 1;
    // Position p's queries need keys [p - window + 1, p) (from 0 early on); the ring holds
    // [pos_ - ring, pos_).
    if (pos_ - L.ring > std::max<int64_t>(0, p - window + 1)) return false;
  }
  return true;
}

void KvCache::truncate(int64_t p) {
  check(can_truncate(p), "KV cache: cannot go back from " + std::to_string(pos_) + " to " + std::to_string(p) +
                             " positions (the sliding window's ring no longer holds them)");
  pos_ = p;
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
