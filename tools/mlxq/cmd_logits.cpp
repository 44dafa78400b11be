// `mlxq logits`: the f32 logits of every position for a token sequence, as .npy or text; with
// --image, the image placeholder runs in the tokens take those images' soft tokens (§10.5).
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/mapped_file.h"
#include "engine/images.h"
#include "io/npy.h"
#include "mlxq/commands.h"
#include "model/gemma4/model.h"
#include "model/gemma4/vision.h"

namespace mlxq::cli {

namespace {
std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    check(used == item.size() && !item.empty() && v >= 0 && v <= INT32_MAX,
          "--tokens: '" + item + "' is not a non-negative token id");
    out.push_back(int32_t(v));
  }
  check(!out.empty(), "--tokens: no token ids given");
  return out;
}

// The soft tokens for the image runs (contiguous image_token_id) of `toks`, one image per run in
// order; each run's length must be its image's soft-token count at the budget.
std::vector<float> image_soft_tokens(model::gemma4::Model& model, const std::vector<int32_t>& toks,
                                     const std::vector<std::string>& paths, int64_t budget) {
  const int32_t img = int32_t(model.config().image_token_id);
  std::vector<int64_t> runs;
  for (size_t i = 0; i < toks.size();) {
    if (toks[i] != img) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < toks.size() && toks[j] == img) ++j;
    runs.push_back(int64_t(j - i));
    i = j;
  }
  check(runs.size() == paths.size(), "--image: " + std::to_string(paths.size()) + " image(s) given but --tokens has " +
                                         std::to_string(runs.size()) + " image placeholder run(s) (token " +
                                         std::to_string(img) + ")");
  model::gemma4::VisionTower& tower = model.vision();
  std::vector<float> out;
  for (size_t k = 0; k < paths.size(); ++k) {
    const MappedFile f(paths[k]);
    const engine::PromptImage im =
        engine::prepare_image(std::span(f.data(), f.size()), paths[k], tower.config(), budget);
    check(im.soft_tokens == runs[k], "--image " + paths[k] + ": " + std::to_string(im.soft_tokens) +
                                         " soft tokens at a budget of " + std::to_string(budget) + ", but run " +
                                         std::to_string(k + 1) + " of --tokens has " + std::to_string(runs[k]));
    const std::vector<float> e = tower.embed(
        model::gemma4::patchify(im.pixels.rgb.data(), im.pixels.width, im.pixels.height, tower.config()));
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}
}  // namespace

void register_logits(CLI::App& app) {
  struct Args {
    std::string model, tokens = "2,105,2364", out, interleaved = "auto";
    std::vector<std::string> images;
    int64_t chunk = 0, max_context = 0, max_soft_tokens = 0;
    bool decode = false, exact = false, int8 = false;
    int top = 0, threads = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("logits", "Compute the logits of every position of a token sequence");
  cmd->add_option("-m,--model", args->model, "Checkpoint directory (default: embedded tiny synthetic model)");
  cmd->add_option("--tokens", args->tokens, "Comma-separated token ids");
  cmd->add_option("--out", args->out, "Write float32 [T, vocab] to this .npy file");
  cmd->add_option("--chunk", args->chunk, "Prefill this many tokens per step")->check(CLI::PositiveNumber);
  cmd->add_flag("--decode", args->decode, "Feed one token at a time");
  cmd->add_option("--top", args->top, "Print only the top-K (id:logit) of each position")->check(CLI::Range(1, 100));
  cmd->add_option("-t,--threads", args->threads, "Threads (0: all cores)");
  cmd->add_flag("--exact", args->exact, "Exact precision: f32 activations in every matmul");
  cmd->add_flag("--int8", args->int8, "One int8 part per activation (faster prefill, further from exact)");
  cmd->add_option("--max-context", args->max_context, "KV cache size (default: the sequence length)");
  cmd->add_option("--image", args->images,
                  "An image for the next image placeholder run in --tokens (repeatable, in order)");
  cmd->add_option("--max-soft-tokens", args->max_soft_tokens, "Soft tokens per image (default: the checkpoint's)")
      ->check(CLI::IsMember({70, 140, 280, 560, 1120}));
  cmd->add_option("--interleaved", args->interleaved, "Interleaved weights file: auto, off, or a path (see `mlxq repack`)")
      ->capture_default_str();
  cmd->callback([args] {
    const std::vector<int32_t> toks = parse_tokens(args->tokens);
    const std::string path = args->model.empty() ? default_model_path() : args->model;
    int64_t chunk = args->decode ? 1 : args->chunk > 0 ? args->chunk : int64_t(toks.size());
    model::gemma4::ModelOptions mo;
    mo.threads = args->threads;
    mo.exact = args->exact;
    mo.int8 = args->int8;
    mo.interleaved = args->interleaved;
    mo.max_chunk = std::min<int64_t>(chunk, 512);
    mo.max_image_tokens = args->max_soft_tokens;
    model::gemma4::Model model(path, mo);
    const int64_t T = int64_t(toks.size()), V = model.config().vocab_size;
    const std::vector<float> soft =
        args->images.empty() ? std::vector<float>{} : image_soft_tokens(model, toks, args->images, model.max_image_tokens());
    auto cache = model.make_cache(std::max<int64_t>(args->max_context, T));
    std::vector<float> logits(size_t(T * V));
    const model::gemma4::SequenceStep step{toks, &cache, logits.data(), true, soft.empty() ? nullptr : soft.data()};
    model.forward_batch(std::span(&step, 1), mo.max_chunk);
    if (!args->out.empty()) {
      io::write_npy_f32(args->out, {T, V}, logits.data());
      std::fprintf(stderr, "wrote %s: float32 [%lld, %lld]\n", args->out.c_str(), (long long)T, (long long)V);
      return;
    }
    std::vector<int32_t> idx(static_cast<size_t>(V));
    for (int64_t t = 0; t < T; ++t) {
      const float* row = &logits[size_t(t * V)];
      if (args->top > 0) {
        std::iota(idx.begin(), idx.end(), 0);
        const int k = std::min<int>(args->top, int(V));
        std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [row](int a, int b) { return row[a] > row[b]; });
        std::printf("pos %lld token %d:", (long long)t, toks[size_t(t)]);
        for (int j = 0; j < k; ++j) std::printf(" %d:%.4f", idx[size_t(j)], row[idx[size_t(j)]]);
        std::printf("\n");
      } else {
        for (int64_t v = 0; v < V; ++v) std::printf(v ? " %.7g" : "%.7g", row[v]);
        std::printf("\n");
      }
    }
  });
}

}  // namespace mlxq::cli
