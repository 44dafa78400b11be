// Synthetic checkpoint generation (see synthetic.h). Each weight row is drawn from its own
// seeded stream (seed, HF tensor name, expert, row), so the HF and MLX forms of one seed are the
// same model: the MLX form is MLX's quantization of the HF form's bf16 values.
#include "convert/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>

#include "convert/recipe.h"
#include "convert/row_writer.h"
#include "core/error.h"
#include "model/gemma4/config.h"

using nlohmann::json;

namespace mlxq::model::gemma4 {

json base_config(const SyntheticOptions& opt);  // config.json without the quantization blocks

namespace {

// One tensor of the HF checkpoint (name after "model.language_model.", or after "model." for the
// vision tower's), and how to draw it.
struct Source {
  std::string name;
  int64_t experts = 0;  // 0: not an expert stack
  int64_t rows = 1, cols = 0;
  bool is_vector = false;  // 1-D: shape [cols]
  bool normal = true;      // N(0, a) when normal, else U(a, b)
  float a = 0, b = 0;
  bool vision = false;  // vision_tower.* / embed_vision.*: outside the language model
};

// Layer l's layer_scalar under SyntheticInit::Stable: spread over [0.8, 1.0] along the depth
// (a low-discrepancy sequence), so the residual's RMS stays within a few times its start and
// far above the norms' eps.
float stable_layer_scalar(int64_t l) {
  const double f = std::fmod(0.6180339887 * double(l + 1), 1.0);
  return float(0.8 + 0.2 * f);
}

// The vision tower's tensors with the golden tower's magnitudes (shared/golden/gemma4-vision):
// linears N(0, 1/sqrt(fan_in)), the position table N(0, 0.35), norms U(0.8, 1.2), q/k norms half
// that (attention scale 1), std_bias N(0, 4), std_scale U(0.75, 1.25).
void vision_sources(const Gemma4Config& c, std::vector<Source>& s) {
  const VisionConfig& v = *c.vision;
  const int64_t Hv = v.hidden_size, Iv = v.intermediate_size;
  auto mat = [&](std::string n, int64_t e, int64_t r, int64_t k, float sigma) {
    s.push_back({std::move(n), e, r, k, false, true, sigma, 0, true});
  };
  auto vec = [&](std::string n, int64_t k, bool normal, float a, float b) {
    s.push_back({std::move(n), 0, 1, k, true, normal, a, b, true});
  };
  auto sd = [](int64_t fan_in) { return 1.0f / std::sqrt(float(fan_in)); };
  const std::string t = "vision_tower.";
  mat(t + "patch_embedder.input_proj.weight", 0, Hv, v.patch_dim(), sd(v.patch_dim()));
  mat(t + "patch_embedder.position_embedding_table", 2, v.position_embedding_size, Hv, 0.35f);
  for (int64_t l = 0; l < v.num_hidden_layers; ++l) {
    const std::string p = t + "encoder.layers." + std::to_string(l) + ".";
    for (const char* n : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                          "post_feedforward_layernorm"})
      vec(p + n + ".weight", Hv, false, 0.8f, 1.2f);
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
      mat(p + "self_attn." + n + ".linear.weight", 0, Hv, Hv, sd(Hv));
    vec(p + "self_attn.q_norm.weight", v.head_dim, false, 0.4f, 0.6f);
    vec(p + "self_attn.k_norm.weight", v.head_dim, false, 0.4f, 0.6f);
    mat(p + "mlp.gate_proj.linear.weight", 0, Iv, Hv, sd(Hv));
    mat(p + "mlp.up_proj.linear.weight", 0, Iv, Hv, sd(Hv));
    mat(p + "mlp.down_proj.linear.weight", 0, Hv, Iv, sd(Iv));
  }
  vec(t + "std_bias", Hv, true, 4.0f, 0);
  vec(t + "std_scale", Hv, false, 0.75f, 1.25f);
  mat("embed_vision.embedding_projection.weight", 0, c.hidden_size, Hv, sd(Hv));
}

std::vector<Source> sources(const Gemma4Config& c, const SyntheticOptions& opt) {
  const bool stable = opt.init == SyntheticInit::Stable;
  const int64_t H = c.hidden_size, I = c.intermediate_size, E = c.num_experts;
  const int64_t Ie = c.moe_intermediate_size, nq = c.num_attention_heads;
  auto sd = [](int64_t fan_in) { return std::clamp(0.8f / std::sqrt(float(fan_in)), 0.02f, 0.05f); };
  std::vector<Source> s;
  auto mat = [&](std::string n, int64_t e, int64_t r, int64_t k, float sigma) {
    s.push_back({std::move(n), e, r, k, false, true, sigma, 0});
  };
  auto vec = [&](std::string n, int64_t k, float lo, float hi) {
    s.push_back({std::move(n), 0, 1, k, true, false, lo, hi});
  };
  // Stable: the embedding (times sqrt(H) at the input) starts the residual at RMS R = 2.5, and
  // the tied lm_head then gives logits of about that standard deviation before the softcap.
  const float embed_sd = stable ? 2.5f / std::sqrt(float(H)) : 0.1f;
  mat("embed_tokens.weight", 0, c.vocab_size, H, embed_sd);
  const double eps = opt.layer_update;
  double R = double(embed_sd) * std::sqrt(double(H));  // expected residual RMS entering layer l
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    const int64_t D = c.layer_head_dim(l), nkv = c.layer_kv_heads(l);
    const float qk = std::pow(float(D), -0.25f);
    vec(p + "input_layernorm.weight", H, 0.8f, 1.2f);
    mat(p + "self_attn.q_proj.weight", 0, nq * D, H, sd(H));
    mat(p + "self_attn.k_proj.weight", 0, nkv * D, H, sd(H));
    if (c.has_v_proj(l)) mat(p + "self_attn.v_proj.weight", 0, nkv * D, H, sd(H));
    mat(p + "self_attn.o_proj.weight", 0, H, nq * D, sd(nq * D));
    vec(p + "self_attn.q_norm.weight", D, 0.8f * qk, 1.2f * qk);
    vec(p + "self_attn.k_norm.weight", D, 0.8f * qk, 1.2f * qk);
    // U(0.8a, 1.2a) has RMS 1.0066a: the branch outputs have RMS a (Stable: eps * R).
    const float post_attn = stable ? float(eps * R / 1.0066) : 1.0f;
    const float post_ffn = stable ? float(eps * R * std::sqrt(1 + eps * eps) / 1.0066) : 1.0f;
    const float scalar = stable_layer_scalar(l);
    if (stable) R *= double(scalar) * (1 + eps * eps);
    vec(p + "post_attention_layernorm.weight", H, 0.8f * post_attn, 1.2f * post_attn);
    vec(p + "pre_feedforward_layernorm.weight", H, 0.8f, 1.2f);
    mat(p + "mlp.gate_proj.weight", 0, I, H, sd(H));
    mat(p + "mlp.up_proj.weight", 0, I, H, sd(H));
    mat(p + "mlp.down_proj.weight", 0, H, I, sd(I));
    vec(p + "post_feedforward_layernorm_1.weight", H, 0.8f, 1.2f);
    mat(p + "router.proj.weight", 0, E, H, 1.0f);
    vec(p + "router.scale", H, 0.9f, 1.1f);
    vec(p + "router.per_expert_scale", E, 0.8f, 1.2f);
    vec(p + "pre_feedforward_layernorm_2.weight", H, 0.8f, 1.2f);
    mat(p + "experts.gate_up_proj", E, 2 * Ie, H, sd(H));
    mat(p + "experts.down_proj", E, H, Ie, sd(Ie));
    vec(p + "post_feedforward_layernorm_2.weight", H, 0.8f, 1.2f);
    vec(p + "post_feedforward_layernorm.weight", H, 0.8f * post_ffn, 1.2f * post_ffn);
    if (stable) vec(p + "layer_scalar", 1, scalar, scalar);
    else vec(p + "layer_scalar", 1, 0.1f, 0.9f);
  }
  if (stable) s.push_back({"norm.weight", 0, 1, H, true, true, 1.0f, 0});  // N(0, 1)
  else vec("norm.weight", H, 0.8f, 1.2f);
  if (c.vision) vision_sources(c, s);
  return s;
}

// One output tensor: a (row range of a) source, as dense values or one part of its quantization.
enum class Part { Dense, Words, Scales, Biases };
struct Piece {
  io::TensorSpec spec;
  const Source* src = nullptr;
  int64_t row0 = 0, rows = 0;  // rows of each expert taken from the source
  Part part = Part::Dense;
  std::string module;          // quantized pieces share it
  quant::Spec q;               // quantized pieces: bits and group size
};

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

// Row r of expert e of `s`, rounded to bf16. Normal values are Irwin-Hall sums of 8 uniforms
// (unit variance, tails to 4.9 sigma): cheap enough for 25 G values, close enough to Gaussian.
void gen_row(const Source& s, uint64_t seed, int64_t e, int64_t r, float* out) {
  uint64_t st = seed ^ fnv1a(s.name);
  st ^= splitmix(st) + uint64_t(e) * 0x632be59bd9b4e019ull + uint64_t(r);
  splitmix(st);
  const float k16 = 1.0f / 65536.0f;
  for (int64_t i = 0; i < s.cols; ++i) {
    float v;
    if (s.normal) {
      const uint64_t u1 = splitmix(st), u2 = splitmix(st);
      float sum = 0;
      for (int j = 0; j < 4; ++j) sum += float((u1 >> (16 * j)) & 0xffff) + float((u2 >> (16 * j)) & 0xffff);
      v = ((sum + 4.0f) * k16 - 4.0f) * 1.2247449f * s.a;
    } else {
      v = s.a + (s.b - s.a) * float(splitmix(st) >> 40) * (1.0f / 16777216.0f);
    }
    out[i] = round_bf16(v);
  }
}


Gemma4Config parsed(const SyntheticOptions& opt) { return parse_config(base_config(opt), "config.json"); }

std::vector<Piece> plan(const SyntheticOptions& opt, const std::vector<Source>& srcs, int64_t num_layers) {
  const bool mlx = opt.format == CheckpointFormat::MLX;
  const std::string text_root = mlx ? "language_model.model." : "model.language_model.";
  std::vector<Piece> out;
  for (const Source& s : srcs) {
    const std::string root = s.vision ? (mlx ? "" : "model.") : text_root;
    std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> parts;  // name, row range
    if (mlx && s.name.ends_with("experts.gate_up_proj")) {
      const std::string base = s.name.substr(0, s.name.size() - std::string("gate_up_proj").size());
      parts.push_back({base + "switch_glu.gate_proj.weight", {0, s.rows / 2}});
      parts.push_back({base + "switch_glu.up_proj.weight", {s.rows / 2, s.rows / 2}});
    } else if (mlx && s.name.ends_with("experts.down_proj")) {
      const std::string base = s.name.substr(0, s.name.size() - std::string("down_proj").size());
      parts.push_back({base + "switch_glu.down_proj.weight", {0, s.rows}});
    } else {
      parts.push_back({s.name, {0, s.rows}});
    }
    for (const auto& part : parts) {
      const std::string& name = part.first;
      const std::pair<int64_t, int64_t> range = part.second;
      std::vector<int64_t> lead;
      if (s.experts) lead.push_back(s.experts);
      auto shape = [&](int64_t cols) {
        std::vector<int64_t> v = lead;
        if (!s.is_vector) v.push_back(range.second);
        v.push_back(cols);
        return v;
      };
      std::optional<quant::Spec> qs;
      if (mlx && opt.recipe.empty()) {
        if (!s.is_vector && name.ends_with(".weight") && s.cols % opt.quant.group_size == 0 &&
            !name.starts_with("vision_tower."))  // the tower stays bf16, as the recipes keep it
          qs = opt.quant;
      } else if (mlx) {
        quant::RecipeOptions ro;
        ro.kind = quant::parse_recipe(opt.recipe);
        ro.bits = opt.quant.bits;
        ro.group_size = opt.quant.group_size;
        ro.o_proj_bf16 = opt.o_proj_bf16;
        ro.num_layers = num_layers;
        qs = quant::choose_spec(root + name, shape(s.cols), ro, {});
      }
      const bool quantize = qs.has_value();
      Piece p;
      p.src = &s;
      p.row0 = range.first;
      p.rows = range.second;
      if (!quantize) {
        p.spec = {root + name, opt.dtype, shape(s.cols)};
        out.push_back(p);
        continue;
      }
      const std::string module = root + name.substr(0, name.size() - 7);  // minus ".weight"
      p.module = module;
      p.q = *qs;
      p.part = Part::Words;
      p.spec = {module + ".weight", DType::U32, shape(s.cols * qs->bits / 32)};
      out.push_back(p);
      p.part = Part::Scales;
      p.spec = {module + ".scales", opt.dtype, shape(s.cols / qs->group_size)};
      out.push_back(p);
      p.part = Part::Biases;
      p.spec = {module + ".biases", opt.dtype, shape(s.cols / qs->group_size)};
      out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end(), [](const Piece& a, const Piece& b) { return a.spec.name < b.spec.name; });
  return out;
}

}  // namespace

json base_config(const SyntheticOptions& opt) {
  json t;
  int64_t L;
  if (opt.preset == "tiny" || opt.preset == "small") {
    // tiny: the golden tiny-a shape. small: the same with the real 262144-token vocabulary, so
    // it works with the real tokenizer (the embedded default model of the chat commands).
    L = 6;
    t = {{"hidden_size", 256}, {"num_attention_heads", 4}, {"head_dim", 64},
         {"num_key_value_heads", 2}, {"global_head_dim", 128}, {"num_global_key_value_heads", 1},
         {"intermediate_size", 512}, {"num_experts", 16}, {"top_k_experts", 4},
         {"moe_intermediate_size", 64}, {"vocab_size", 2048}, {"vocab_size_per_layer_input", 2048},
         {"sliding_window", 32}, {"max_position_embeddings", 4096}};
    if (opt.preset == "small") {
      t["vocab_size"] = 262144;
      t["vocab_size_per_layer_input"] = 262144;
      t["sliding_window"] = 128;
      t["max_position_embeddings"] = 32768;
    }
  } else if (opt.preset == "26b-a4b") {
    L = 30;
    t = {{"hidden_size", 2816}, {"num_attention_heads", 16}, {"head_dim", 256},
         {"num_key_value_heads", 8}, {"global_head_dim", 512}, {"num_global_key_value_heads", 2},
         {"intermediate_size", 2112}, {"num_experts", 128}, {"top_k_experts", 8},
         {"moe_intermediate_size", 704}, {"vocab_size", 262144},
         {"vocab_size_per_layer_input", 262144}, {"sliding_window", 1024},
         {"max_position_embeddings", 262144}};
  } else {
    throw Error("make-model: unknown preset '" + opt.preset + "' (expected tiny, small or 26b-a4b)");
  }
  if (opt.layers > 0) L = opt.layers;
  json types = json::array();
  for (int64_t l = 0; l < L; ++l)  // 5 sliding : 1 full, and the last layer is full (HF-C)
    types.push_back(l % 6 == 5 || l == L - 1 ? "full_attention" : "sliding_attention");
  t["num_hidden_layers"] = L;
  t["layer_types"] = types;
  t["attention_bias"] = false;
  t["attention_dropout"] = 0.0;
  t["attention_k_eq_v"] = true;
  t["bos_token_id"] = 2;
  t["dtype"] = "bfloat16";
  t["enable_moe_block"] = true;
  t["eos_token_id"] = 1;
  t["final_logit_softcapping"] = 30.0;
  t["hidden_activation"] = "gelu_pytorch_tanh";
  t["hidden_size_per_layer_input"] = 0;
  t["initializer_range"] = 0.02;
  t["model_type"] = "gemma4_text";
  t["num_kv_shared_layers"] = 0;
  t["pad_token_id"] = 0;
  t["rms_norm_eps"] = 1e-06;
  t["rope_parameters"] = {
      {"full_attention", {{"partial_rotary_factor", 0.25}, {"rope_theta", 1000000.0}, {"rope_type", "proportional"}}},
      {"sliding_attention", {{"rope_theta", 10000.0}, {"rope_type", "default"}}}};
  t["tie_word_embeddings"] = true;
  t["use_bidirectional_attention"] = "vision";
  t["use_cache"] = true;
  t["use_double_wide_mlp"] = false;
  json c = {{"architectures", {"Gemma4ForConditionalGeneration"}},
            {"dtype", "bfloat16"},
            {"eos_token_id", {1, 106}},
            {"initializer_range", 0.02},
            {"model_type", "gemma4"},
            {"text_config", t},
            {"tie_word_embeddings", true},
            {"transformers_version", "5.5.0"}};
  if (opt.vision) {
    // The real tower's config (§10.1); tiny/small: the golden tiny tower's widths. tiny's 2048-id
    // vocabulary has no room for the real image ids: the last three ids, as the golden's e2e does.
    const bool real = opt.preset == "26b-a4b";
    c["vision_config"] = {{"model_type", "gemma4_vision"},
                          {"hidden_size", real ? 1152 : 128},
                          {"intermediate_size", real ? 4304 : 256},
                          {"num_hidden_layers", real ? 27 : 2},
                          {"num_attention_heads", real ? 16 : 2},
                          {"num_key_value_heads", real ? 16 : 2},
                          {"head_dim", real ? 72 : 64},
                          {"patch_size", 16},
                          {"pooling_kernel_size", 3},
                          {"position_embedding_size", 10240},
                          {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 100.0}}},
                          {"rms_norm_eps", 1e-06},
                          {"hidden_activation", "gelu_pytorch_tanh"},
                          {"use_clipped_linears", false},
                          {"standardize", true},
                          {"default_output_length", 280},
                          {"attention_bias", false},
                          {"attention_dropout", 0.0},
                          {"dtype", "bfloat16"},
                          {"global_head_dim", real ? 72 : 64},
                          {"initializer_range", 0.02},
                          {"max_position_embeddings", 131072}};
    c["audio_config"] = nullptr;
    c["vision_soft_tokens_per_image"] = 280;
    const bool tiny = opt.preset == "tiny";
    c["boi_token_id"] = tiny ? 2045 : 255999;
    c["image_token_id"] = tiny ? 2046 : 258880;
    c["eoi_token_id"] = tiny ? 2047 : 258882;
    c["audio_token_id"] = 258881;  // the real config's other multimodal ids (unused: no audio, no video)
    c["boa_token_id"] = 256000;
    c["eoa_token_index"] = 258883;
    c["video_token_id"] = 258884;
  }
  return c;
}

json synthetic_config(const SyntheticOptions& opt) {
  json c = base_config(opt);
  if (opt.format == CheckpointFormat::MLX) {
    // The default triple plus a sparse override per module whose spec differs (§3.2).
    json q = {{"bits", opt.quant.bits}, {"group_size", opt.quant.group_size}, {"mode", "affine"}};
    const Gemma4Config cfg = parse_config(c, "config.json");
    for (const Piece& p : plan(opt, sources(cfg, opt), cfg.num_hidden_layers))
      if (p.part == Part::Words && !(p.q == opt.quant))
        q[p.module] = {{"bits", p.q.bits}, {"group_size", p.q.group_size}, {"mode", "affine"}};
    c["quantization"] = q;
    c["quantization_config"] = q;
  }
  return c;
}

std::vector<io::TensorSpec> synthetic_tensor_plan(const SyntheticOptions& opt) {
  const Gemma4Config cfg = parsed(opt);
  const auto srcs = sources(cfg, opt);
  std::vector<io::TensorSpec> out;
  for (const Piece& p : plan(opt, srcs, cfg.num_hidden_layers)) out.push_back(p.spec);
  return out;
}

void write_synthetic_model(const std::string& out_dir, const SyntheticOptions& opt, ThreadPool& pool,
                           const std::function<void(size_t, size_t, const std::string&)>& progress) {
  check(opt.dtype == DType::BF16 || opt.dtype == DType::F32, "make-model: --dtype must be bf16 or f32");
  check(quant::valid_bits(opt.quant.bits), "make-model: --q-bits must be 2, 3, 4, 5, 6 or 8");
  check(quant::valid_group_size(opt.quant.group_size), "make-model: --q-group-size must be 32, 64 or 128");
  const Gemma4Config cfg = parsed(opt);
  const auto srcs = sources(cfg, opt);
  const std::vector<Piece> pieces = plan(opt, srcs, cfg.num_hidden_layers);
  std::map<std::string, const Piece*> by_name;
  std::vector<io::TensorSpec> specs;
  for (const Piece& p : pieces) {
    by_name[p.spec.name] = &p;
    specs.push_back(p.spec);
  }
  const bool mlx = opt.format == CheckpointFormat::MLX;

  io::CheckpointWriter writer(out_dir, opt.overwrite);
  writer.write_text_file("config.json", synthetic_config(opt).dump(2) + "\n");
  const json gen = {{"bos_token_id", 2}, {"do_sample", true}, {"eos_token_id", {1, 106, 50}},
                    {"pad_token_id", 0}, {"temperature", 1.0}, {"top_k", 64}, {"top_p", 0.95},
                    {"transformers_version", "5.5.0"}};
  writer.write_text_file("generation_config.json", gen.dump(2) + "\n");
  if (!opt.tokenizer_json.empty()) {
    std::ifstream in(opt.tokenizer_json, std::ios::binary);
    check(bool(in), opt.tokenizer_json + ": cannot open tokenizer file");
    writer.write_text_file("tokenizer.json",
                           std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
  }

  // Quantized modules are computed whole on first touch and kept until all three parts are out
  // (they are adjacent in sorted order: .biases, .scales, .weight).
  struct Quantized { quant::PackedTensor t; int served = 0; };
  std::map<std::string, std::unique_ptr<Quantized>> cache;
  size_t done = 0;

  io::ShardOptions so;
  so.max_shard_bytes = opt.max_shard_bytes;
  so.pad_header = !mlx;
  so.metadata = {{"format", mlx ? "mlx" : "pt"}};
  writer.write_tensors(specs, so, [&](const io::TensorSpec& spec, const io::ByteSink& sink) {
    const Piece& p = *by_name.at(spec.name);
    const Source& s = *p.src;
    const int64_t E = std::max<int64_t>(1, s.experts), total_rows = E * p.rows;
    auto row_of = [&](int64_t i, float* out) { gen_row(s, opt.seed, i / p.rows, p.row0 + i % p.rows, out); };
    if (p.part == Part::Dense) {
      quant::write_dense_rows(total_rows, s.cols, opt.dtype, row_of, pool, sink);
    } else {
      auto& q = cache[p.module];
      if (!q) {
        q = std::make_unique<Quantized>();
        q->t = quant::quantize_rows(total_rows, s.cols, p.q, quant::Rounding::Cpu, opt.dtype, row_of, pool);
      }
      const auto& bytes = p.part == Part::Words ? q->t.words : p.part == Part::Scales ? q->t.scales : q->t.biases;
      sink(bytes.data(), bytes.size());
      if (++q->served == 3) cache.erase(p.module);
    }
    if (progress) progress(++done, pieces.size(), spec.name);
  });
  writer.commit();
}

}  // namespace mlxq::model::gemma4
