// Binding checkpoint tensors to Gemma4Weights, with shape/dtype validation against the config.
#include "model/gemma4/weights.h"

#include "core/error.h"

namespace mlxq::model::gemma4 {

using io::TensorInfo;
using kernels::ExpertStack;
using kernels::Matrix;

Layout detect_layout(const io::Checkpoint& ckpt) {
  for (const auto& [name, t] : ckpt.tensors()) {
    if (name.rfind("model.language_model.", 0) == 0) return Layout::HF;
    if (name.rfind("language_model.model.", 0) == 0) return Layout::MLX;
  }
  throw Error(ckpt.source() + ": no Gemma-4 text tensors (neither model.language_model.* nor "
                              "language_model.model.*)");
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

class Binder {
 public:
  Binder(const io::Checkpoint& ckpt, const Gemma4Config& cfg) : ckpt_(ckpt), cfg_(cfg) {}

  const TensorInfo& need(const std::string& name, const std::string& why) const {
    const TensorInfo* t = ckpt_.find(name);
    check(t != nullptr, ckpt_.source() + ": missing tensor '" + name + "' (" + why + ")");
    return *t;
  }

  void expect_shape(const TensorInfo& t, const std::vector<int64_t>& want, const std::string& why) const {
    check(t.shape == want, *t.file + ": tensor '" + t.name + "' has shape " + t.shape_str() +
                               ", expected " + shape_str(want) + " (" + why + ")");
  }

  std::vector<float> vec(const std::string& name, int64_t n, const std::string& why) const {
    const TensorInfo& t = need(name, why);
    expect_shape(t, {n}, why);
    check(is_float(t.dtype), *t.file + ": tensor '" + name + "' has dtype " + dtype_name(t.dtype) +
                                 ", expected F32, F16 or BF16");
    std::vector<float> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = quant::load_scalar(t.data, t.dtype, i);
    return out;
  }

  // A weight [E?, rows, cols] stored as `weight_name`, dense or (when `module.scales` exists)
  // affine-quantized with the config's spec for `module`.
  ExpertStack matrix(const std::string& weight_name, const std::string& module, int64_t experts,
                     int64_t rows, int64_t cols, const std::string& why) const {
    const TensorInfo& w = need(weight_name, why);
    std::vector<int64_t> lead;
    if (experts > 0) lead.push_back(experts);
    auto dims = [&](int64_t r, int64_t c) {
      std::vector<int64_t> s = lead;
      s.push_back(r);
      s.push_back(c);
      return s;
    };
    ExpertStack es;
    es.n_experts = experts > 0 ? experts : 1;
    Matrix& m = es.first;
    m.rows = rows;
    m.cols = cols;
    m.name = &w.name;
    m.data = w.data;
    const TensorInfo* sc = ckpt_.find(module + ".scales");
    if (sc) {
      check(cfg_.quantization.has_value(),
            *sc->file + ": tensor '" + sc->name + "' is quantized but " + cfg_.source +
                " has no quantization block");
      const quant::Spec spec = cfg_.quantization->spec_for(module);
      const TensorInfo& bi = need(module + ".biases", "every quantized tensor has scales and biases");
      check(w.dtype == DType::U32, *w.file + ": tensor '" + w.name + "' has dtype " +
                                       dtype_name(w.dtype) + ", expected U32 (it has .scales)");
      check(cols % spec.group_size == 0,
            *w.file + ": tensor '" + w.name + "': input size " + std::to_string(cols) +
                " is not a multiple of group_size " + std::to_string(spec.group_size));
      const std::string qwhy = why + "; " + std::to_string(spec.bits) + "-bit, group size " +
                               std::to_string(spec.group_size) + " per " + cfg_.source;
      expect_shape(w, dims(rows, cols * spec.bits / 32), qwhy);
      expect_shape(*sc, dims(rows, cols / spec.group_size), qwhy);
      expect_shape(bi, dims(rows, cols / spec.group_size), qwhy);
      check(is_float(sc->dtype) && bi.dtype == sc->dtype,
            *sc->file + ": tensor '" + sc->name + "' and its biases must share a float dtype");
      m.quantized = true;
      m.spec = spec;
      m.dtype = sc->dtype;
      m.row_bytes = size_t(cols * spec.bits / 32) * 4;
      m.scales = sc->data;
      m.biases = bi.data;
      m.sb_row_bytes = size_t(cols / spec.group_size) * dtype_size(sc->dtype);
      es.sb_stride = m.sb_row_bytes * size_t(rows);
    } else {
      check(is_float(w.dtype), *w.file + ": tensor '" + w.name + "' has dtype " +
                                   dtype_name(w.dtype) + ", expected F32, F16 or BF16 (no " +
                                   module + ".scales, so it is not quantized)");
      expect_shape(w, dims(rows, cols), why);
      m.dtype = w.dtype;
      m.row_bytes = size_t(cols) * dtype_size(w.dtype);
    }
    es.data_stride = m.row_bytes * size_t(rows);
    return es;
  }

  Matrix matrix2d(const std::string& module, int64_t rows, int64_t cols, const std::string& why) const {
    return matrix(module + ".weight", module, 0, rows, cols, why).first;
  }

 private:
  const io::Checkpoint& ckpt_;
  const Gemma4Config& cfg_;
};

// Splits an expert stack whose rows are [gate; up] into two stacks of `half` rows each.
ExpertStack rows_of(const ExpertStack& s, int64_t r0, int64_t n) {
  ExpertStack out = s;
  out.first = s.first.row_slice(r0, n);
  return out;
}

}  // namespace

Gemma4Weights bind_weights(const io::Checkpoint& ckpt, const Gemma4Config& cfg) {
  Binder b(ckpt, cfg);
  Gemma4Weights w;
  w.layout = detect_layout(ckpt);
  const bool hf = w.layout == Layout::HF;
  const std::string root = hf ? "model.language_model." : "language_model.model.";
  const int64_t H = cfg.hidden_size, E = cfg.num_experts, Ie = cfg.moe_intermediate_size;
  const std::string src = "from " + cfg.source;

  w.embed_tokens = b.matrix2d(root + "embed_tokens", cfg.vocab_size, H, "vocab_size x hidden_size " + src);
  w.final_norm = b.vec(root + "norm.weight", H, "hidden_size " + src);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = root + "layers." + std::to_string(l) + ".";
    const std::string kind = cfg.is_sliding(l) ? "sliding_attention" : "full_attention";
    const std::string why = "layer " + std::to_string(l) + " is " + kind + " " + src;
    const int64_t D = cfg.layer_head_dim(l), nkv = cfg.layer_kv_heads(l);
    const int64_t nq = cfg.num_attention_heads;
    LayerWeights L;
    L.input_layernorm = b.vec(p + "input_layernorm.weight", H, why);
    L.q_proj = b.matrix2d(p + "self_attn.q_proj", nq * D, H, why);
    L.k_proj = b.matrix2d(p + "self_attn.k_proj", nkv * D, H, why);
    if (cfg.has_v_proj(l)) L.v_proj = b.matrix2d(p + "self_attn.v_proj", nkv * D, H, why);
    L.o_proj = b.matrix2d(p + "self_attn.o_proj", H, nq * D, why);
    L.q_norm = b.vec(p + "self_attn.q_norm.weight", D, why);
    L.k_norm = b.vec(p + "self_attn.k_norm.weight", D, why);
    L.post_attention_layernorm = b.vec(p + "post_attention_layernorm.weight", H, why);
    L.pre_feedforward_layernorm = b.vec(p + "pre_feedforward_layernorm.weight", H, why);
    L.mlp_gate = b.matrix2d(p + "mlp.gate_proj", cfg.intermediate_size, H, why);
    L.mlp_up = b.matrix2d(p + "mlp.up_proj", cfg.intermediate_size, H, why);
    L.mlp_down = b.matrix2d(p + "mlp.down_proj", H, cfg.intermediate_size, why);
    L.post_feedforward_layernorm_1 = b.vec(p + "post_feedforward_layernorm_1.weight", H, why);
    L.router_proj = b.matrix2d(p + "router.proj", E, H, why);
    L.router_scale = b.vec(p + "router.scale", H, why);
    L.per_expert_scale = b.vec(p + "router.per_expert_scale", E, why);
    L.pre_feedforward_layernorm_2 = b.vec(p + "pre_feedforward_layernorm_2.weight", H, why);
    if (hf) {
      const ExpertStack gu = b.matrix(p + "experts.gate_up_proj", p + "experts.gate_up_proj", E,
                                      2 * Ie, H, why);
      L.expert_gate = rows_of(gu, 0, Ie);  // rows 0..Ie-1 are gate, Ie..2Ie-1 up (§5.2)
      L.expert_up = rows_of(gu, Ie, Ie);
      L.expert_down = b.matrix(p + "experts.down_proj", p + "experts.down_proj", E, H, Ie, why);
    } else {
      const std::string sg = p + "experts.switch_glu.";
      L.expert_gate = b.matrix(sg + "gate_proj.weight", sg + "gate_proj", E, Ie, H, why);
      L.expert_up = b.matrix(sg + "up_proj.weight", sg + "up_proj", E, Ie, H, why);
      L.expert_down = b.matrix(sg + "down_proj.weight", sg + "down_proj", E, H, Ie, why);
    }
    L.post_feedforward_layernorm_2 = b.vec(p + "post_feedforward_layernorm_2.weight", H, why);
    L.post_feedforward_layernorm = b.vec(p + "post_feedforward_layernorm.weight", H, why);
    L.layer_scalar = b.vec(p + "layer_scalar", 1, why)[0];
    w.layers.push_back(std::move(L));
  }
  return w;
}

VisionWeights bind_vision_weights(const io::Checkpoint& ckpt, const Gemma4Config& cfg) {
  check(cfg.vision.has_value(), cfg.source + ": no vision_config (this checkpoint has no vision tower)");
  const VisionConfig& v = *cfg.vision;
  Binder b(ckpt, cfg);
  const bool hf = ckpt.find("model.vision_tower.patch_embedder.input_proj.weight") != nullptr;
  const std::string p = hf ? "model.vision_tower." : "vision_tower.";
  const std::string why = "vision_config " + std::string("from ") + cfg.source;
  const int64_t Hv = v.hidden_size, Iv = v.intermediate_size;
  for (const char* clip : {"input_min", "input_max", "output_min", "output_max"})
    check(ckpt.find(p + "encoder.layers.0.self_attn.q_proj." + clip) == nullptr,
          ckpt.source() + ": tensor '" + p + "encoder.layers.0.self_attn.q_proj." + clip +
              "' is a clipped linear (E2B/E4B towers); mlxq runs the 26B-A4B / 31B tower");
  VisionWeights w;
  w.input_proj = b.matrix2d(p + "patch_embedder.input_proj", Hv, v.patch_dim(), why);
  w.position_table = b.matrix(p + "patch_embedder.position_embedding_table", p + "patch_embedder.position_embedding_table",
                              2, v.position_embedding_size, Hv, why);
  for (int64_t l = 0; l < v.num_hidden_layers; ++l) {
    const std::string q = p + "encoder.layers." + std::to_string(l) + ".";
    const std::string lw = "vision layer " + std::to_string(l) + ", " + why;
    VisionLayerWeights L;
    L.input_layernorm = b.vec(q + "input_layernorm.weight", Hv, lw);
    L.post_attention_layernorm = b.vec(q + "post_attention_layernorm.weight", Hv, lw);
    L.pre_feedforward_layernorm = b.vec(q + "pre_feedforward_layernorm.weight", Hv, lw);
    L.post_feedforward_layernorm = b.vec(q + "post_feedforward_layernorm.weight", Hv, lw);
    L.q_proj = b.matrix2d(q + "self_attn.q_proj.linear", Hv, Hv, lw);
    L.k_proj = b.matrix2d(q + "self_attn.k_proj.linear", Hv, Hv, lw);
    L.v_proj = b.matrix2d(q + "self_attn.v_proj.linear", Hv, Hv, lw);
    L.o_proj = b.matrix2d(q + "self_attn.o_proj.linear", Hv, Hv, lw);
    L.q_norm = b.vec(q + "self_attn.q_norm.weight", v.head_dim, lw);
    L.k_norm = b.vec(q + "self_attn.k_norm.weight", v.head_dim, lw);
    L.gate_proj = b.matrix2d(q + "mlp.gate_proj.linear", Iv, Hv, lw);
    L.up_proj = b.matrix2d(q + "mlp.up_proj.linear", Iv, Hv, lw);
    L.down_proj = b.matrix2d(q + "mlp.down_proj.linear", Hv, Iv, lw);
    w.layers.push_back(std::move(L));
  }
  if (v.standardize) {
    w.std_bias = b.vec(p + "std_bias", Hv, why);
    w.std_scale = b.vec(p + "std_scale", Hv, why);
  }
  w.embedding_projection = b.matrix2d((hf ? "model.embed_vision." : "embed_vision.") + std::string("embedding_projection"),
                                      cfg.hidden_size, Hv, "text hidden_size x vision hidden_size, " + why);
  return w;
}

}  // namespace mlxq::model::gemma4
