// The streaming converter (see convert.h).
#include "convert/convert.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "convert/awq.h"
#include "convert/imatrix.h"
#include "convert/recipe.h"
#include "convert/row_writer.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/checkpoint_writer.h"
#include "io/safetensors.h"
#include "model/gemma4/config.h"

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace mlxq::quant {

bool sanitize_name(const std::string& name, bool tied, std::vector<std::string>* out) {
  out->clear();
  std::string s = name;
  for (const char* p : {"model.language_model.model.", "model.language_model.", "language_model.model.",
                        "language_model.", "model."}) {
    if (s.rfind(p, 0) == 0) {
      s = s.substr(std::string(p).size());
      break;
    }
  }
  if (s.find("rotary_emb") != std::string::npos) return false;
  for (const char* clip : {".input_max", ".input_min", ".output_max", ".output_min"})
    if (s.ends_with(clip) && s.find("vision") == std::string::npos && s.find("audio") == std::string::npos) return false;
  if (tied && (s == "lm_head.weight")) return false;
  for (const char* mm : {"vision_tower.", "vision_encoder.", "audio_tower.", "audio_encoder.", "embed_audio.",
                         "embed_vision.", "multi_modal_projector.", "vision_embedder."}) {
    if (s.rfind(mm, 0) == 0) {
      out->push_back(s);
      return true;
    }
  }
  const std::string P = "language_model.model.";
  if (s.ends_with("experts.gate_up_proj")) {
    const std::string base = s.substr(0, s.size() - std::string("gate_up_proj").size());
    out->push_back(P + base + "switch_glu.gate_proj.weight");
    out->push_back(P + base + "switch_glu.up_proj.weight");
  } else if (s.ends_with("experts.down_proj")) {
    out->push_back(P + s.substr(0, s.size() - std::string("down_proj").size()) + "switch_glu.down_proj.weight");
  } else {
    out->push_back(P + s);
  }
  return true;
}

namespace {

// An output tensor: rows [row0, row0 + rows) of each leading slice of the source, dense or one
// part of a quantized module.
enum class Part { Dense, Words, Scales, Biases };
struct Piece {
  io::TensorSpec spec;
  const io::TensorInfo* src = nullptr;
  int64_t slices = 1, rows = 1, cols = 0, row0 = 0, src_rows = 1;
  Part part = Part::Dense;
  std::string module;
  Spec q;
  // AWQ (§6.4): input columns times col[j], output rows times row[i], or a norm divided by norm[j].
  const std::vector<float>* col = nullptr;
  const std::vector<float>* row = nullptr;
  const std::vector<float>* norm = nullptr;
};

std::string override_key(const std::string& module) {
  if (module.rfind("language_model.", 0) == 0) return module;
  if (module.rfind("model.", 0) == 0) return "language_model." + module;
  return "language_model.model." + module;
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }



// AWQ with the reference's fixed ratio (s = imp^0.5) can make the importance-weighted error worse
// (one dominant channel stretches its groups' range for all the others). So, when quantizing, each
// fold group's exponent is chosen per group from {0.1, ..., 1.0} (s_alpha = s_0.5^(2 alpha),
// already normalised) by the importance-weighted reconstruction error of its own tensors on up to
// 256 sampled rows each, keeping only exponents that lower the error of every tensor in the group;
// a group no exponent improves is left unscaled. Returns the groups' report lines.
struct FoldGroup {
  std::string norm;                 // norm_divide key ("" for group B)
  std::vector<std::string> columns; // canonical modules whose columns are scaled
  std::string rows;                 // canonical module whose rows take 1/s (group B: up_proj)
  std::string scale_key;            // where the s_0.5 vector lives in column_scale
};

double group_error(const io::TensorInfo& t, const std::vector<float>& s, const std::vector<float>& imp, Spec spec,
                   Rounding rounding) {
  const int64_t cols = t.shape.back();
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < t.shape.size(); ++i) rows *= t.shape[i];
  const int64_t samples = std::min<int64_t>(rows, 256), gpr = cols / spec.group_size;
  std::vector<float> w(static_cast<size_t>(cols)), ws(static_cast<size_t>(cols)), deq(static_cast<size_t>(cols));
  std::vector<float> sc(static_cast<size_t>(gpr)), bi(static_cast<size_t>(gpr));
  std::vector<uint32_t> words(static_cast<size_t>(cols * spec.bits / 32));
  double err = 0;
  for (int64_t k = 0; k < samples; ++k) {
    const int64_t r = k * rows / samples;
    const size_t esz = dtype_size(t.dtype);
    for (int64_t j = 0; j < cols; ++j) {
      w[size_t(j)] = load_scalar(t.data + size_t(r * cols) * esz, t.dtype, j);
      ws[size_t(j)] = round_bf16(w[size_t(j)] * s[size_t(j)]);
    }
    quantize_row(ws.data(), cols, spec, rounding, words.data(), sc.data(), bi.data());
    for (auto& v : sc) v = round_bf16(v);
    for (auto& v : bi) v = round_bf16(v);
    dequantize_row_f32(words.data(), sc.data(), bi.data(), DType::F32, cols, spec, deq.data());
    for (int64_t j = 0; j < cols; ++j) {
      const double d = double(deq[size_t(j)]) / double(s[size_t(j)]) - double(w[size_t(j)]);
      err += double(imp[size_t(j)]) * d * d;
    }
  }
  return err;
}

std::vector<std::string> tune_awq(AwqPlan& plan, const io::Checkpoint& in, const RecipeOptions& ro,
                                  const std::vector<Override>& overrides, Rounding rounding, bool tied) {
  // Source tensor and quantization spec of each canonical module.
  std::map<std::string, std::pair<const io::TensorInfo*, std::optional<Spec>>> src;
  std::vector<std::string> names;
  for (const auto& [name, t] : in.tensors()) {
    const std::string key = canonical_key(name);
    if (key.empty() || !sanitize_name(name, tied, &names) || names.empty()) continue;
    auto shape = t->shape;
    if (names.size() == 2) shape[shape.size() - 2] /= 2;
    src[key] = {t, choose_spec(names[0], shape, ro, overrides)};
  }
  std::vector<FoldGroup> groups;
  for (const auto& [norm, sv] : plan.norm_divide) {
    const std::string layer = norm.substr(0, norm.rfind('.') + 1);
    FoldGroup g;
    g.norm = norm;
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj",
                          "experts.gate_up"}) {
      const bool mine = (norm.ends_with("input_layernorm") && std::string(m).rfind("self_attn", 0) == 0) ||
                        (norm.ends_with("pre_feedforward_layernorm") && std::string(m).rfind("mlp", 0) == 0) ||
                        (norm.ends_with("pre_feedforward_layernorm_2") && std::string(m) == "experts.gate_up");
      if (mine && plan.column_scale.count(layer + m)) g.columns.push_back(layer + m);
    }
    if (!g.columns.empty()) groups.push_back(g);
  }
  for (const auto& [key, sv] : plan.column_scale) {
    if (!key.ends_with("mlp.down_proj")) continue;
    FoldGroup g;
    g.columns = {key};
    g.rows = key.substr(0, key.size() - std::string("down_proj").size()) + "up_proj";
    groups.push_back(g);
  }
  std::vector<std::string> report;
  for (const FoldGroup& g : groups) {
    const std::vector<float> s05 = plan.column_scale.at(g.columns[0]);
    std::vector<float> imp(s05.size());
    for (size_t j = 0; j < s05.size(); ++j) imp[j] = s05[j] * s05[j];  // proportional to the importance
    std::vector<double> base;
    bool usable = true;
    for (const auto& m : g.columns) {
      auto it = src.find(m);
      if (it == src.end() || !it->second.second) { usable = false; break; }
      base.push_back(group_error(*it->second.first, std::vector<float>(s05.size(), 1.0f), imp, *it->second.second, rounding));
    }
    double best_total = 0;
    float best_alpha = 0;
    if (usable) {
      for (int a10 = 1; a10 <= 10; ++a10) {
        const float alpha = float(a10) / 10.0f;
        std::vector<float> sa(s05.size());
        for (size_t j = 0; j < s05.size(); ++j) sa[j] = std::pow(s05[j], 2.0f * alpha);
        double total = 0;
        bool all_better = true;
        for (size_t k = 0; k < g.columns.size(); ++k) {
          const auto& sp = src.at(g.columns[k]);
          const double e = group_error(*sp.first, sa, imp, *sp.second, rounding);
          all_better = all_better && e < base[k];
          total += e - base[k];
        }
        if (all_better && total < best_total) best_total = total, best_alpha = alpha;
      }
    }
    const std::string what = g.norm.empty() ? g.columns[0] + " (rows of " + g.rows + ")" : g.norm;
    if (best_alpha == 0) {  // no exponent helps every tensor: leave the group unscaled
      for (const auto& m : g.columns) plan.column_scale.erase(m);
      if (!g.norm.empty()) plan.norm_divide.erase(g.norm);
      if (!g.rows.empty()) plan.row_scale.erase(g.rows);
      report.push_back("AWQ group " + what + ": left unscaled (no exponent lowers every tensor's error)");
      continue;
    }
    std::vector<float> sa(s05.size());
    for (size_t j = 0; j < s05.size(); ++j) sa[j] = std::pow(s05[j], 2.0f * best_alpha);
    for (const auto& m : g.columns) plan.column_scale[m] = sa;
    if (!g.norm.empty()) plan.norm_divide[g.norm] = sa;
    if (!g.rows.empty()) {
      std::vector<float> inv(sa.size());
      for (size_t j = 0; j < sa.size(); ++j) inv[j] = 1.0f / sa[j];
      plan.row_scale[g.rows] = inv;
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", best_alpha);  // (modified is recounted below)
    report.push_back("AWQ group " + what + ": exponent " + buf + " (" + std::to_string(g.columns.size()) +
                     " tensor(s), weighted error lower for each)");
  }
  // Recount what is still changed (up_proj belongs to groups A and B, so subtracting per group
  // would miscount).
  std::set<std::string> changed;
  for (const auto& [k, v] : plan.column_scale) changed.insert(k);
  for (const auto& [k, v] : plan.row_scale) changed.insert(k);
  for (const auto& [k, v] : plan.norm_divide) changed.insert(k);
  plan.modified = int(changed.size());
  return report;
}
// config.json, read and parsed once: it is copied to the output (key order kept) and AWQ plans
// from it. Errors name the file, as io::read_json_file's do.
ordered_json read_config(const std::string& path) {
  std::ifstream in(path);
  check(bool(in), path + ": cannot open");
  ordered_json cfg;
  try {
    cfg = ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
  check(cfg.is_object(), path + ": not a JSON object");
  return cfg;
}

}  // namespace

ConvertStats convert_checkpoint(const ConvertOptions& opt, ThreadPool& pool,
                                const std::function<void(size_t, size_t, uint64_t, const std::string&)>& progress) {
  // Validate the cheap things before touching the input (§7.2).
  const RecipeKind kind = parse_recipe(opt.recipe);
  RecipeOptions ro;
  ro.kind = kind;
  ro.bits = opt.bits > 0 ? opt.bits : (kind == RecipeKind::Unsloth ? 3 : 4);
  ro.group_size = opt.group_size;
  ro.o_proj_bf16 = opt.o_proj_bf16;
  if (opt.quantize) {
    check(valid_bits(ro.bits), "--q-bits " + std::to_string(ro.bits) + " is not one of 2, 3, 4, 5, 6, 8");
    check(valid_group_size(ro.group_size), "--q-group-size " + std::to_string(ro.group_size) + " is not one of 32, 64, 128");
  }
  check(opt.dtype == DType::BF16 || opt.dtype == DType::F16 || opt.dtype == DType::F32,
        "-d must be bfloat16, float16 or float32");
  const std::vector<Override> overrides = opt.overrides_path.empty() ? std::vector<Override>{} : read_overrides(opt.overrides_path);

  io::Checkpoint in(opt.input);
  const std::string cfg_path = (fs::path(in.dir()) / "config.json").string();
  ordered_json cfg = read_config(cfg_path);
  bool tied = true;
  if (cfg.contains("tie_word_embeddings") && cfg["tie_word_embeddings"].is_boolean()) tied = cfg["tie_word_embeddings"];
  int layers = 0;
  const ordered_json& tc = cfg.contains("text_config") ? cfg["text_config"] : cfg;
  if (tc.contains("num_hidden_layers") && tc["num_hidden_layers"].is_number_integer()) layers = tc["num_hidden_layers"];
  ro.num_layers = layers;

  ConvertStats st;
  // AWQ: scales planned from the importances before any tensor is read.
  AwqPlan awq;
  const bool use_awq = !opt.imatrix_path.empty() && opt.awq;
  if (use_awq) {
    const Imatrix im = read_imatrix(opt.imatrix_path);
    const auto imp = importance_by_canonical(im);
    awq = plan_awq(imp, model::gemma4::parse_config(nlohmann::json(cfg), cfg_path), opt.awq_experts);
    check(awq.modified > 0, opt.imatrix_path + ": the imatrix (" + std::to_string(im.entries.size()) +
                                " entries) matches no tensor of " + in.dir() + ": AWQ would change nothing");
    if (opt.quantize) {
      const auto tuned = tune_awq(awq, in, ro, overrides, opt.rounding, tied);
      awq.report.insert(awq.report.end(), tuned.begin(), tuned.end());
    }
    check(awq.modified > 0, opt.imatrix_path + ": AWQ would not lower the quantization error of any tensor group");
    st.awq_modified = size_t(awq.modified);
    if (opt.awq_report) *opt.awq_report = awq.report;
  }
  auto awq_of = [&](const std::string& name, Piece& p) {
    if (!use_awq) return;
    const std::string key = canonical_key(name);
    if (key.empty()) return;
    if (auto it = awq.column_scale.find(key); it != awq.column_scale.end()) p.col = &it->second;
    if (auto it = awq.row_scale.find(key); it != awq.row_scale.end()) p.row = &it->second;
    if (auto it = awq.norm_divide.find(key); it != awq.norm_divide.end()) p.norm = &it->second;
  };

  // Plan every output tensor.
  std::vector<Piece> pieces;
  std::map<std::string, std::pair<Spec, bool>> module_specs;  // module -> spec (quantized only)
  std::vector<std::string> names;
  for (const auto& [name, t] : in.tensors()) {
    if (!sanitize_name(name, tied, &names)) continue;
    if (!opt.vision && (names[0].starts_with("vision_tower.") || names[0].starts_with("embed_vision."))) continue;
    check(is_float(t->dtype), *t->file + ": tensor '" + name + "' has dtype " + dtype_name(t->dtype) +
                                  "; convert takes a floating-point (BF16/F16/F32) checkpoint");
    st.bytes_in += t->nbytes;
    const auto& sh = t->shape;
    const int64_t cols = sh.empty() ? 1 : sh.back();
    const int64_t rows = sh.size() >= 2 ? sh[sh.size() - 2] : 1;
    int64_t slices = 1;
    for (size_t i = 0; i + 2 < sh.size(); ++i) slices *= sh[i];
    for (size_t k = 0; k < names.size(); ++k) {
      Piece p;
      awq_of(name, p);
      p.src = t;
      p.cols = cols;
      p.slices = slices;
      p.src_rows = rows;
      p.rows = names.size() == 2 ? rows / 2 : rows;
      p.row0 = names.size() == 2 ? int64_t(k) * (rows / 2) : 0;
      std::vector<int64_t> shape(sh.begin(), sh.end());
      if (shape.size() >= 2) shape[shape.size() - 2] = p.rows;
      const std::string& out_name = names[k];
      std::optional<Spec> q;
      if (opt.quantize) q = choose_spec(out_name, shape, ro, overrides);
      if (!q) {
        p.spec = {out_name, opt.dtype, shape};
        pieces.push_back(p);
        continue;
      }
      p.q = *q;
      p.module = out_name.substr(0, out_name.size() - 7);
      module_specs[p.module] = {*q, true};
      std::vector<int64_t> wshape = shape, sshape = shape;
      wshape.back() = cols * q->bits / 32;
      sshape.back() = cols / q->group_size;
      p.part = Part::Words;
      p.spec = {p.module + ".weight", DType::U32, wshape};
      pieces.push_back(p);
      p.part = Part::Scales;
      p.spec = {p.module + ".scales", opt.dtype, sshape};
      pieces.push_back(p);
      p.part = Part::Biases;
      p.spec = {p.module + ".biases", opt.dtype, sshape};
      pieces.push_back(p);
      ++st.quantized;
    }
  }
  std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.spec.name < b.spec.name; });

  // config.json: the input minus _name_or_path, plus identical quantization blocks (§3.2).
  cfg.erase("_name_or_path");
  if (!opt.vision) cfg.erase("vision_config");  // a text-only checkpoint: images are refused by name
  if (opt.quantize) {
    ordered_json q = {{"group_size", ro.group_size}, {"bits", ro.bits}, {"mode", "affine"}};
    for (const auto& [module, spec] : module_specs) {
      if (spec.first == Spec{ro.bits, ro.group_size}) continue;  // sparse: only what differs
      q[override_key(module)] = {{"bits", spec.first.bits}, {"group_size", spec.first.group_size}, {"mode", "affine"}};
      ++st.overrides;
    }
    cfg["quantization"] = q;
    cfg["quantization_config"] = q;
  }
  ordered_json sorted_cfg = ordered_json::object();  // top-level keys sorted, as the reference writes
  std::vector<std::string> keys;
  for (const auto& [k, v] : cfg.items()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  for (const auto& k : keys) sorted_cfg[k] = cfg[k];

  io::CheckpointWriter writer(opt.output, opt.force);
  writer.write_text_file("config.json", sorted_cfg.dump(2) + "\n");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                        "added_tokens.json", "chat_template.jinja", "generation_config.json", "preprocessor_config.json",
                        "processor_config.json", "video_preprocessor_config.json", "viterbi_calibration.json"}) {
    const fs::path p = fs::path(in.dir()) / f;
    if (!fs::exists(p)) continue;
    std::ifstream fin(p, std::ios::binary);
    writer.write_text_file(f, std::string((std::istreambuf_iterator<char>(fin)), std::istreambuf_iterator<char>()));
  }
  for (const auto& e : fs::directory_iterator(in.dir())) {
    if (e.path().extension() != ".py") continue;
    std::ifstream fin(e.path(), std::ios::binary);
    writer.write_text_file(e.path().filename().string(),
                           std::string((std::istreambuf_iterator<char>(fin)), std::istreambuf_iterator<char>()));
  }

  std::vector<io::TensorSpec> specs;
  std::map<std::string, const Piece*> by_name;
  for (const Piece& p : pieces) {
    specs.push_back(p.spec);
    by_name[p.spec.name] = &p;
    st.bytes_out += p.spec.nbytes();
  }
  struct Packed { PackedTensor t; int served = 0; };
  std::map<std::string, std::unique_ptr<Packed>> cache;
  uint64_t bytes_done = 0;
  size_t done = 0;
  const Rounding rounding = opt.rounding;
  const DType odt = opt.dtype;

  // Source row r (0 <= r < slices * rows) of a piece, converted to f32 and cast to the output dtype.
  auto read_row = [](const Piece& p, int64_t r, float* out, DType odt) {
    const int64_t slice = r / p.rows, row = p.row0 + r % p.rows;
    const size_t esz = dtype_size(p.src->dtype);
    const uint8_t* src = p.src->data + (size_t(slice * p.src_rows + row) * size_t(p.cols)) * esz;
    for (int64_t j = 0; j < p.cols; ++j) out[j] = load_scalar(src, p.src->dtype, j);
    // AWQ folds: each product computed in f32 from the stored weight and rounded once to the
    // output dtype (bf16 as the spec says; an f32 output keeps the f32 product, an exact fold up
    // to f32 rounding).
    if (odt == DType::F32) {
      const float rs = p.row ? (*p.row)[size_t(row)] : 1.0f;
      for (int64_t j = 0; j < p.cols; ++j) {
        if (p.norm) out[j] = out[j] / (*p.norm)[size_t(j)];
        else if (p.col || p.row) out[j] = out[j] * (p.col ? (*p.col)[size_t(j)] : 1.0f) * rs;
      }
    } else if (p.norm) {
      for (int64_t j = 0; j < p.cols; ++j) out[j] = awq_norm(out[j], (*p.norm)[size_t(j)]);
    } else if (p.col || p.row) {
      awq_scale_row(out, p.cols, p.col, p.row ? (*p.row)[size_t(row)] : 1.0f);
    }
    for (int64_t j = 0; j < p.cols; ++j) out[j] = round_to(odt, out[j]);
  };

  io::ShardOptions so;
  so.max_shard_bytes = opt.max_shard_bytes;
  so.pad_header = false;
  so.metadata = {{"format", "mlx"}};
  st.shards = size_t(writer.write_tensors(specs, so, [&](const io::TensorSpec& spec, const io::ByteSink& sink) {
    const Piece& p = *by_name.at(spec.name);
    const int64_t total_rows = p.slices * p.rows;
    if (p.part == Part::Dense) {
      write_dense_rows(total_rows, p.cols, odt, [&](int64_t r, float* out) { read_row(p, r, out, odt); }, pool, sink);
    } else {
      auto& q = cache[p.module];
      if (!q) {  // the first of .biases/.scales/.weight (adjacent in sorted order) quantizes the module
        q = std::make_unique<Packed>();
        q->t = quantize_rows(total_rows, p.cols, p.q, rounding, odt,
                             [&](int64_t r, float* out) { read_row(p, r, out, odt); }, pool);
      }
      const auto& bytes = p.part == Part::Words ? q->t.words : p.part == Part::Scales ? q->t.scales : q->t.biases;
      sink(bytes.data(), bytes.size());
      if (++q->served == 3) cache.erase(p.module);
    }
    // The source is done once its dense piece or its quantized module's last part is out.
    if (p.part == Part::Dense || (p.part != Part::Dense && !cache.count(p.module))) release_pages(p.src->data, p.src->nbytes);
    bytes_done += spec.nbytes();
    if (progress) progress(++done, pieces.size(), bytes_done, spec.name);
  }));
  st.tensors = pieces.size();
  writer.commit();
  return st;
}

}  // namespace mlxq::quant
