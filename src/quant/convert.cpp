// The streaming converter (see convert.h).
#include "quant/convert.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/json_fields.h"
#include "io/safetensors.h"
#include "quant/recipe.h"

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
};

std::string override_key(const std::string& module) {
  if (module.rfind("language_model.", 0) == 0) return module;
  if (module.rfind("model.", 0) == 0) return "language_model." + module;
  return "language_model.model." + module;
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

void store(DType dt, const float* in, int64_t n, uint8_t* out) {
  if (dt == DType::F32) {
    std::memcpy(out, in, size_t(n) * 4);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = dt == DType::BF16 ? f32_to_bf16(in[i]) : f32_to_f16(in[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
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
  const nlohmann::json cfg_sorted = io::read_json_file(cfg_path);
  std::ifstream cfg_in(cfg_path);
  ordered_json cfg = ordered_json::parse(cfg_in);
  check(cfg.is_object(), cfg_path + ": not a JSON object");
  bool tied = true;
  if (cfg.contains("tie_word_embeddings") && cfg["tie_word_embeddings"].is_boolean()) tied = cfg["tie_word_embeddings"];
  int layers = 0;
  const ordered_json& tc = cfg.contains("text_config") ? cfg["text_config"] : cfg;
  if (tc.contains("num_hidden_layers") && tc["num_hidden_layers"].is_number_integer()) layers = tc["num_hidden_layers"];
  ro.num_layers = layers;

  // Plan every output tensor.
  std::vector<Piece> pieces;
  std::map<std::string, std::pair<Spec, bool>> module_specs;  // module -> spec (quantized only)
  std::vector<std::string> names;
  ConvertStats st;
  for (const auto& [name, t] : in.tensors()) {
    if (!sanitize_name(name, tied, &names)) continue;
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
  (void)cfg_sorted;

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
  struct Packed { std::vector<uint8_t> words, scales, biases; int served = 0; };
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
    for (int64_t j = 0; j < p.cols; ++j) out[j] = round_to(odt, load_scalar(src, p.src->dtype, j));
  };

  io::ShardOptions so;
  so.max_shard_bytes = opt.max_shard_bytes;
  so.pad_header = false;
  so.metadata = {{"format", "mlx"}};
  st.shards = size_t(writer.write_tensors(specs, so, [&](const io::TensorSpec& spec, const io::ByteSink& sink) {
    const Piece& p = *by_name.at(spec.name);
    const int64_t total_rows = p.slices * p.rows;
    if (p.part == Part::Dense) {
      const int64_t block = 256;
      const size_t esz = dtype_size(odt);
      std::vector<uint8_t> buf(size_t(block * p.cols) * esz);
      for (int64_t r0 = 0; r0 < total_rows; r0 += block) {
        const int64_t n = std::min(block, total_rows - r0);
        pool.parallel_for(size_t(n), [&](size_t b, size_t e, int) {
          std::vector<float> row(static_cast<size_t>(p.cols));
          for (size_t i = b; i < e; ++i) {
            read_row(p, r0 + int64_t(i), row.data(), odt);
            store(odt, row.data(), p.cols, &buf[i * size_t(p.cols) * esz]);
          }
        });
        sink(buf.data(), size_t(n * p.cols) * esz);
      }
    } else {
      auto& q = cache[p.module];
      if (!q) {  // the first of .biases/.scales/.weight (adjacent in sorted order) quantizes the module
        q = std::make_unique<Packed>();
        const int64_t wpr = p.cols * p.q.bits / 32, gpr = p.cols / p.q.group_size;
        const size_t esz = dtype_size(odt);
        q->words.resize(size_t(total_rows * wpr) * 4);
        q->scales.resize(size_t(total_rows * gpr) * esz);
        q->biases.resize(size_t(total_rows * gpr) * esz);
        pool.parallel_for(size_t(total_rows), [&](size_t b, size_t e, int) {
          std::vector<float> row(static_cast<size_t>(p.cols)), sc(static_cast<size_t>(gpr)), bi(static_cast<size_t>(gpr));
          for (size_t i = b; i < e; ++i) {
            read_row(p, int64_t(i), row.data(), odt);
            quantize_row(row.data(), p.cols, p.q, rounding, reinterpret_cast<uint32_t*>(&q->words[i * size_t(wpr) * 4]),
                         sc.data(), bi.data());
            store(odt, sc.data(), gpr, &q->scales[i * size_t(gpr) * esz]);
            store(odt, bi.data(), gpr, &q->biases[i * size_t(gpr) * esz]);
          }
        });
      }
      const auto& bytes = p.part == Part::Words ? q->words : p.part == Part::Scales ? q->scales : q->biases;
      sink(bytes.data(), bytes.size());
      if (++q->served == 3) cache.erase(p.module);
    }
    bytes_done += spec.nbytes();
    if (progress) progress(++done, pieces.size(), bytes_done, spec.name);
  }));
  st.tensors = pieces.size();
  writer.commit();
  return st;
}

}  // namespace mlxq::quant
