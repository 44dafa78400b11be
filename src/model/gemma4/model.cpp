// Model: opening a Gemma-4 checkpoint for inference (config, weights, the interleaved file, the
// thread pool and the workspace), the entry points forward() / forward_batch() that cut the
// input into chunks, and the bytes-per-token figure the benchmarks report.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "model/gemma4/interleaved_file.h"
#include "model/gemma4/model.h"
#include "model/gemma4/vision.h"
#include "model/gemma4/workspace.h"

namespace mlxq::model::gemma4 {

namespace k = kernels;

Model::Model(const std::string& path, ModelOptions opt) : opt_(opt) {
  check(opt_.max_chunk > 0, "max_chunk must be positive");
  ckpt_ = std::make_unique<io::Checkpoint>(path);
  cfg_ = load_config(ckpt_->dir().empty() ? "." : ckpt_->dir());
  w_ = bind_weights(*ckpt_, cfg_);
  attach_interleaved_file();
  pool_ = std::make_unique<ThreadPool>(opt_.threads);
  ws_ = std::make_unique<Workspace>();

  check(opt_.max_image_tokens >= 0, "max_image_tokens must not be negative");
  image_run_cap_ = opt_.max_image_tokens > 0 ? opt_.max_image_tokens
                   : cfg_.vision ? cfg_.vision->default_output_length : 0;
  const int64_t T = std::max(opt_.max_chunk, image_run_cap_), H = cfg_.hidden_size, nq = cfg_.num_attention_heads;
  int64_t qmax = 0, kvmax = 0;
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    qmax = std::max(qmax, nq * cfg_.layer_head_dim(l));
    kvmax = std::max(kvmax, cfg_.layer_kv_heads(l) * cfg_.layer_head_dim(l));
    ws_->inv_freq.push_back(cfg_.inv_freq(l));
    int slot = -1;
    for (int64_t j = 0; j < l && slot < 0; ++j)
      if (ws_->inv_freq[size_t(j)] == ws_->inv_freq.back()) slot = ws_->rope_slot[size_t(j)];
    if (slot < 0) {
      slot = int(ws_->rope_cos.size());
      ws_->rope_layer.push_back(l);
      ws_->rope_cos.emplace_back(size_t(T * (cfg_.layer_head_dim(l) / 2)));
      ws_->rope_sin.emplace_back(size_t(T * (cfg_.layer_head_dim(l) / 2)));
    }
    ws_->rope_slot.push_back(slot);
  }
  const int64_t imax = std::max(cfg_.intermediate_size, cfg_.moe_intermediate_size);
  const int64_t E = cfg_.num_experts, K = cfg_.top_k_experts;
  auto sz = [](int64_t n) { return size_t(n); };
  for (auto* v : {&ws_->x, &ws_->h, &ws_->a, &ws_->o, &ws_->m, &ws_->xe}) v->resize(sz(T * H));
  ws_->ye.resize(sz(T * K * H));
  ws_->eg.resize(sz(T * K * cfg_.moe_intermediate_size));
  ws_->eu.resize(sz(T * K * cfg_.moe_intermediate_size));
  ws_->exp_base.resize(sz(E));
  ws_->act_h.reserve(T, H);
  ws_->act_wide.reserve(T, qmax);
  ws_->act_ff.reserve(T * K, imax);
  ws_->tasks.reserve(sz(3 * E + 8));
  ws_->views.reserve(sz(3 * E + 8));
  ws_->q.resize(sz(T * qmax));
  ws_->attn.resize(sz(T * qmax));
  ws_->kr.resize(sz(T * kvmax));
  ws_->vr.resize(sz(T * kvmax));
  ws_->gate.resize(sz(T * imax));
  ws_->up.resize(sz(T * imax));
  ws_->router.resize(sz(T * E));
  ws_->top_idx.resize(sz(T * K));
  ws_->top_w.resize(sz(T * K));
  ws_->exp_count.resize(sz(E));
  ws_->exp_tok.resize(sz(E * T));
  ws_->exp_w.resize(sz(E * T));
  ws_->scores.resize(size_t(pool_->size()));
  ws_->pos.resize(sz(T));
  ws_->run_begin.resize(sz(T));
  ws_->run_end.resize(sz(T));
  ws_->qblocks.reserve(sz(T));

  // The tower binds its tensors now (mapped, nothing read); a text-only conversion that kept
  // vision_config but dropped the tensors loads as a text model and refuses images by name.
  if (!cfg_.vision) {
    no_vision_ = cfg_.source + ": this checkpoint has no vision tower (no vision_config in config.json)";
  } else {
    try {
      vision_ = std::make_unique<VisionTower>(*ckpt_, cfg_, *pool_, precision());
    } catch (const Error& e) {
      no_vision_ = std::string("this checkpoint's vision tower cannot be used: ") + e.what();
    }
  }
}

Model::~Model() = default;

VisionTower& Model::vision() {
  check(vision_ != nullptr, no_vision_);
  return *vision_;
}

// Only the AVX-512 int8 kernel reads the interleaved layout; Exact never does.
void Model::attach_interleaved_file() {
  if (opt_.interleaved == "off" || precision() == k::Precision::Exact || !k::il16_kernel_active()) return;
  const bool automatic = opt_.interleaved == "auto";
  const std::string path = automatic ? default_interleaved_path(*ckpt_) : opt_.interleaved;
  if (automatic && !std::filesystem::exists(path)) return;
  try {
    il_map_ = attach_interleaved(*ckpt_, w_, path);
    il_path_ = path;
  } catch (const Error& e) {
    if (!automatic) throw;
    std::fprintf(stderr, "mlxq: warning: %s; reading the checkpoint's own layout (run `mlxq repack` to rebuild it)\n",
                 e.what());
  }
}

void Model::forward(std::span<const int32_t> tokens, KvCache& cache, float* logits, bool all_positions,
                    int64_t chunk) {
  const SequenceStep one{tokens, &cache, logits, all_positions};
  forward_batch(std::span<const SequenceStep>(&one, 1), chunk);
}

void Model::forward_batch(std::span<const SequenceStep> seqs, int64_t chunk) {
  if (chunk <= 0 || chunk > opt_.max_chunk) chunk = opt_.max_chunk;
  // Checked before any row runs (messages built only on failure: this runs once per decoded token).
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SequenceStep& s = seqs[i];
    auto fail = [&](const std::string& what) {
      throw Error((seqs.size() > 1 ? "sequence " + std::to_string(i) + ": " : std::string()) + what);
    };
    if (!s.cache) fail("no KV cache");
    for (size_t j = 0; j < i; ++j)
      if (seqs[j].cache == s.cache) fail("shares its KV cache with sequence " + std::to_string(j));
    const KvCache& cache = *s.cache;
    const int64_t n = int64_t(s.tokens.size());
    if (cache.max_chunk() < std::max(chunk, image_run_cap_))
      fail("KV cache was made for chunks of at most " + std::to_string(cache.max_chunk()) + " tokens");
    if (cache.pos() + n > cache.max_context())
      fail("context of " + std::to_string(cache.pos() + n) + " tokens exceeds the KV cache's max_context of " +
           std::to_string(cache.max_context()));
    for (int64_t t = 0; t < n; ++t) {
      const int32_t id = s.tokens[size_t(t)];
      if (id < 0 || id >= cfg_.vocab_size)
        fail("token id " + std::to_string(id) + " at position " + std::to_string(t) + " is outside the vocabulary [0, " +
             std::to_string(cfg_.vocab_size) + ")");
    }
    if (s.image_embeddings) {
      if (cfg_.image_token_id < 0) fail(cfg_.source + ": images given but the config has no image_token_id");
      for (int64_t t = 0, run = 0; t < n; ++t) {
        run = s.tokens[size_t(t)] == cfg_.image_token_id ? run + 1 : 0;
        if (run > std::max(chunk, image_run_cap_))
          fail("an image of more than " + std::to_string(std::max(chunk, image_run_cap_)) +
               " soft tokens: this model was loaded for images of at most " + std::to_string(image_run_cap_) +
               " (max_image_tokens)");
      }
    }
  }
  // Each step packs up to `chunk` rows, taking every sequence's next tokens in order.
  const int64_t V = cfg_.vocab_size;
  std::vector<int64_t> done(seqs.size(), 0);
  for (;;) {
    ws_->segs.clear();
    int64_t rows = 0;
    for (size_t i = 0; i < seqs.size() && rows < chunk; ++i) {
      const SequenceStep& s = seqs[i];
      const int64_t n = int64_t(s.tokens.size()), left = n - done[i];
      if (left <= 0) continue;
      Segment g;
      g.T = std::min(left, chunk - rows);
      if (s.image_embeddings) {  // an image run is never cut: it goes whole, alone if need be
        const int32_t img = int32_t(cfg_.image_token_id);
        const int32_t* tk = s.tokens.data() + done[i];
        int64_t cut = g.T;
        while (cut > 0 && cut < left && tk[cut] == img && tk[cut - 1] == img) --cut;
        if (cut == 0) {  // the segment starts with a run longer than the room left
          if (rows > 0) continue;  // next step
          while (cut < left && tk[cut] == img) ++cut;  // a step of its own, up to image_run_cap_ rows
        }
        g.T = cut;
      }
      if (s.image_embeddings) {
        int64_t before = 0;
        for (int64_t t = 0; t < done[i]; ++t) before += s.tokens[size_t(t)] == cfg_.image_token_id;
        g.images = s.image_embeddings + before * cfg_.hidden_size;
      }
      g.tokens = s.tokens.data() + done[i];
      g.row0 = rows;
      g.p0 = s.cache->pos();
      g.cache = s.cache;
      g.all = s.all_positions;
      if (s.logits && s.all_positions) g.logits = s.logits + done[i] * V;
      if (s.logits && !s.all_positions && done[i] + g.T == n) g.logits = s.logits;
      done[i] += g.T;
      rows += g.T;
      ws_->segs.push_back(g);
    }
    if (rows == 0) break;
    forward_chunk(rows);
  }
}

uint64_t Model::bytes_per_token() const {
  uint64_t n = w_.embed_tokens.bytes();  // the tied lm_head reads it all
  for (const auto& L : w_.layers) {
    for (const k::Matrix* m : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.mlp_gate,
                               &L.mlp_up, &L.mlp_down, &L.router_proj})
      n += m->bytes();
    const uint64_t per_expert = L.expert_gate.first.bytes() + L.expert_up.first.bytes() +
                                L.expert_down.first.bytes();
    n += per_expert * uint64_t(cfg_.top_k_experts);
  }
  return n;
}

}  // namespace mlxq::model::gemma4
