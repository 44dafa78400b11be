// `mlxq quant-error`: how far a quantized checkpoint is from its BF16 reference - per tensor, the
// importance-weighted relative reconstruction error; over calibration text, the KL divergence of
// the next-token distributions and the top-1 agreement.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "convert/convert.h"
#include "convert/imatrix.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "mlxq/commands.h"
#include "mlxq/divergence.h"
#include "model/gemma4/model.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace mlxq::cli {

namespace {

// A reference weight as seen under its MLX name: rows [row0, row0 + rows) of each leading slice.
struct RefView { const io::TensorInfo* t; int64_t row0, rows, src_rows, cols, slices; };

std::map<std::string, RefView> reference_views(const io::Checkpoint& ref) {
  std::map<std::string, RefView> out;
  std::vector<std::string> names;
  for (const auto& [name, t] : ref.tensors()) {
    if (!quant::sanitize_name(name, true, &names) || t->shape.size() < 2) continue;
    const int64_t cols = t->shape.back(), rows = t->shape[t->shape.size() - 2];
    int64_t slices = 1;
    for (size_t i = 0; i + 2 < t->shape.size(); ++i) slices *= t->shape[i];
    for (size_t k = 0; k < names.size(); ++k) {
      const int64_t r = names.size() == 2 ? rows / 2 : rows;
      out[names[k].substr(0, names[k].size() - 7)] = {t, int64_t(k) * r, r, rows, cols, slices};
    }
  }
  return out;
}

// KL divergence of next-token distributions of `mq` against `mr` over chunks of `text`.
void kl_report(model::gemma4::Model& mr, model::gemma4::Model& mq, const std::string& dir, const std::string& alt_dir,
               const std::string& text_path, int ctx, int chunks, const char* label) {
  std::string tok_path = (fs::path(dir) / "tokenizer.json").string();
  if (!fs::exists(tok_path)) tok_path = (fs::path(alt_dir) / "tokenizer.json").string();
  check(fs::exists(tok_path), tok_path + ": missing (the KL divergence needs a tokenizer)");
  const text::Tokenizer tok = text::Tokenizer::from_file(tok_path);
  std::ifstream in(text_path, std::ios::binary);
  check(bool(in), text_path + ": cannot open");
  const std::vector<int32_t> ids = tok.encode(std::string((std::istreambuf_iterator<char>(in)), {}), false);
  const int64_t V = mr.config().vocab_size, per = ctx - 1;
  check(mq.config().vocab_size == V, "the two checkpoints have different vocabularies");
  std::vector<float> lr(size_t(ctx) * size_t(V)), lq(lr.size());
  double sum = 0, worst = 0, entropy = 0;
  int64_t n = 0, agree = 0, echo = 0;
  for (int64_t c = 0; c < chunks && (c + 1) * per <= int64_t(ids.size()); ++c) {
    std::vector<int32_t> chunk = {2};
    chunk.insert(chunk.end(), ids.begin() + c * per, ids.begin() + (c + 1) * per);
    auto cr = mr.make_cache(int64_t(chunk.size())), cq = mq.make_cache(int64_t(chunk.size()));
    mr.forward(chunk, cr, lr.data());
    mq.forward(chunk, cq, lq.data());
    for (size_t t = 0; t < chunk.size(); ++t) {
      bool same = false;
      int64_t top = 0;
      double h = 0;
      const double d = kl(&lr[t * size_t(V)], &lq[t * size_t(V)], V, &same, &top, &h);
      entropy += h;
      echo += top == chunk[t];
      sum += d;
      worst = std::max(worst, d);
      agree += same;
      ++n;
    }
  }
  check(n > 0, text_path + ": too little text for one chunk of " + std::to_string(ctx) + " tokens");
  std::printf("\n%s over %lld positions: mean %.4e, max %.4e; top-1 agreement %.1f%%\n", label, (long long)n,
              sum / double(n), worst, 100.0 * double(agree) / double(n));
  // How informative the test is: a near-certain reference (entropy ~0), or one that mostly
  // predicts the token it was fed, hides differences that a spread distribution would show.
  std::printf("reference: mean entropy %.3f nats; top-1 is the input token at %.1f%% of positions\n",
              entropy / double(n), 100.0 * double(echo) / double(n));
}

// The Fast precision (two-part int8 activations into quantized matmuls), or with int8 the Int8
// one (one part), against the Exact one, same weights.
void fast_vs_exact(const std::string& path, const std::string& text, int ctx, int chunks, int threads, bool int8,
                   const std::string& interleaved) {
  check(!text.empty(), "quant-error --fast-vs-exact needs --text");
  model::gemma4::Model exact(path, {threads, 128, true, false, "off"}),
      fast(path, {threads, 128, false, int8, interleaved});
  kl_report(exact, fast, path, path, text, ctx, chunks, int8 ? "KL(exact || int8)" : "KL(exact || fast)");
}

}  // namespace

void register_quant_error(CLI::App& app) {
  struct Args {
    std::string ref, model, text, imatrix, interleaved = "auto";
    int ctx = 128, chunks = 4, top = 20, threads = 0;
    bool fast_vs_exact = false, int8 = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("quant-error", "Compare a quantized checkpoint with its BF16 reference");
  cmd->add_option("--ref", a->ref, "Reference (BF16) checkpoint");
  cmd->add_flag("--fast-vs-exact", a->fast_vs_exact,
                "Instead: KL of the model's Fast precision (two-part int8 activations) against its Exact precision (needs --text)");
  cmd->add_flag("--int8", a->int8, "With --fast-vs-exact: the Int8 precision (one int8 part) instead of Fast");
  cmd->add_option("--interleaved", a->interleaved,
                  "With --fast-vs-exact: the interleaved weights file of the fast side: auto, off, or a path")
      ->capture_default_str();
  cmd->add_option("-m,--model", a->model, "Quantized checkpoint")->required();
  cmd->add_option("--text", a->text, "Calibration text for the KL divergence of next-token distributions");
  cmd->add_option("--imatrix", a->imatrix, "Importances that weight the per-tensor error (default: uniform)");
  cmd->add_option("-c,--ctx", a->ctx, "Tokens per chunk")->check(CLI::Range(8, 4096));
  cmd->add_option("--chunks", a->chunks, "Chunks of text to evaluate")->check(CLI::PositiveNumber);
  cmd->add_option("--top", a->top, "Print the N tensors with the largest error")->check(CLI::NonNegativeNumber);
  cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)");
  cmd->callback([a] {
    if (a->fast_vs_exact)
      return fast_vs_exact(a->model, a->text, a->ctx, a->chunks, a->threads, a->int8, a->interleaved);
    check(!a->ref.empty(), "quant-error: --ref is required (or --fast-vs-exact)");
    io::Checkpoint ref(a->ref), q(a->model);
    const auto views = reference_views(ref);
    std::map<std::string, quant::Importance> imp;
    if (!a->imatrix.empty()) imp = quant::importance_by_canonical(quant::read_imatrix(a->imatrix));
    const model::gemma4::Gemma4Config qcfg = model::gemma4::load_config(q.dir());
    check(qcfg.quantization.has_value(), q.dir() + ": not a quantized checkpoint (no quantization block)");
    struct Row { std::string name; int bits; double rel; };
    std::vector<Row> rows;
    std::vector<float> deq, w;
    for (const auto& [name, t] : q.tensors()) {
      if (!name.ends_with(".scales")) continue;
      const std::string module = name.substr(0, name.size() - 7);
      auto it = views.find(module);
      const io::TensorInfo* wt = q.find(module + ".weight");
      const io::TensorInfo* bt = q.find(module + ".biases");
      if (it == views.end() || !wt || !bt) continue;
      const RefView& v = it->second;
      const quant::Spec spec = qcfg.quantization->spec_for(module);
      const std::string key = quant::canonical_key(module);
      const std::vector<float>* weights = nullptr;
      if (auto im = imp.find(key); im != imp.end() && !im->second.per_matrix.empty()) weights = &im->second.per_matrix[0];
      deq.resize(size_t(v.cols));
      w.resize(size_t(v.cols));
      double num = 0, den = 0;
      const int64_t total = v.slices * v.rows, step = std::max<int64_t>(1, total / 512);  // sample rows
      const size_t wpr = size_t(v.cols * spec.bits / 32) * 4, spr = size_t(v.cols / spec.group_size) * dtype_size(t->dtype);
      for (int64_t r = 0; r < total; r += step) {
        quant::dequantize_row_f32(wt->data + size_t(r) * wpr, t->data + size_t(r) * spr, bt->data + size_t(r) * spr,
                                  t->dtype, v.cols, spec, deq.data());
        const int64_t slice = r / v.rows, row = v.row0 + r % v.rows;
        const uint8_t* src = v.t->data + size_t(slice * v.src_rows + row) * size_t(v.cols) * dtype_size(v.t->dtype);
        for (int64_t j = 0; j < v.cols; ++j) {
          const double ref_w = quant::load_scalar(src, v.t->dtype, j), d = deq[size_t(j)] - ref_w;
          const double wj = weights && weights->size() == size_t(v.cols) ? (*weights)[size_t(j)] : 1.0;
          num += wj * d * d;
          den += wj * ref_w * ref_w;
        }
      }
      rows.push_back({module, spec.bits, den > 0 ? num / den : 0});
    }
    std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) { return x.rel > y.rel; });
    double mean = 0;
    for (const auto& r : rows) mean += r.rel / double(rows.size());
    std::printf("%zu quantized tensors compared; mean %s relative error %.3e\n", rows.size(),
                imp.empty() ? "unweighted" : "importance-weighted", mean);
    std::printf("\n| tensor | bits | relative error |\n|---|---:|---:|\n");
    for (size_t i = 0; i < rows.size() && int(i) < a->top; ++i)
      std::printf("| %s | %d | %.3e |\n", rows[i].name.c_str(), rows[i].bits, rows[i].rel);
    if (a->text.empty()) return;

    model::gemma4::Model mr(a->ref, {a->threads, 128, true}), mq(a->model, {a->threads, 128, false});
    kl_report(mr, mq, q.dir(), ref.dir(), a->text, a->ctx, a->chunks, "KL(ref || quant)");
  });
}

}  // namespace mlxq::cli
