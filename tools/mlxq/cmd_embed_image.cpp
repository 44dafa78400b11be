// `mlxq embed-image`: an image through a checkpoint's vision tower (gemma4-architecture.md §10),
// written as float32 [soft tokens, text hidden] .npy: decode, resize to the budget's target size,
// patchify, encode, pool, project. For checks against other implementations.
#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "io/image.h"
#include "io/npy.h"
#include "mlxq/commands.h"
#include "model/gemma4/vision.h"

namespace mlxq::cli {

void register_embed_image(CLI::App& app) {
  struct Args {
    std::string model, image, out;
    int64_t budget = 0;
    int threads = 0;
    bool exact = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("embed-image", "Write an image's soft-token embeddings (the vision tower's output) as .npy");
  cmd->add_option("-m,--model", a->model, "Checkpoint directory with a vision tower (default: the embedded model)");
  cmd->add_option("--image", a->image, "Image file (PNG, JPEG, BMP, GIF, WebP)")->required();
  cmd->add_option("--out", a->out, "Write float32 [soft tokens, hidden] to this .npy file")->required();
  cmd->add_option("--max-soft-tokens", a->budget, "Soft-token budget: 70, 140, 280, 560 or 1120 (default: the config's)");
  cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)");
  cmd->add_flag("--exact", a->exact, "f32 activations in every matmul (the golden path; default: Fast)");
  cmd->callback([a] {
    using model::gemma4::VisionImage;
    const std::string dir = a->model.empty() ? default_model_path() : a->model;
    const model::gemma4::Gemma4Config cfg = model::gemma4::load_config(dir);
    check(cfg.vision.has_value(), dir + ": this checkpoint has no vision tower (no vision_config in config.json)");
    const int64_t budget = a->budget > 0 ? a->budget : cfg.vision->default_output_length;
    check(model::gemma4::valid_vision_budget(budget),
          "--max-soft-tokens " + std::to_string(budget) + ": expected 70, 140, 280, 560 or 1120");
    io::Checkpoint ckpt(dir);
    ThreadPool pool(a->threads);
    model::gemma4::VisionTower tower(ckpt, cfg, pool,
                                     a->exact ? kernels::Precision::Exact : kernels::Precision::Fast);
    const auto t0 = std::chrono::steady_clock::now();
    io::Image im = io::read_image(a->image);
    const auto [tw, th] = model::gemma4::vision_target_size(im.width, im.height, budget, tower.config());
    const int w0 = im.width, h0 = im.height;
    if (tw != im.width || th != im.height) im = io::resize_bicubic(im, int(tw), int(th));
    const VisionImage img = model::gemma4::patchify(im.rgb.data(), im.width, im.height, tower.config());
    const auto t1 = std::chrono::steady_clock::now();
    const std::vector<float> emb = tower.embed(img);
    const auto t2 = std::chrono::steady_clock::now();
    const int64_t S = img.soft_tokens(tower.config());
    io::write_npy_f32(a->out, {S, cfg.hidden_size}, emb.data());
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    std::fprintf(stderr, "%s: %d x %d -> %lld x %lld, %lld x %lld patches, %lld soft tokens; wrote %s [%lld, %lld] "
                 "(preprocess %.0f ms, tower %.0f ms)\n",
                 a->image.c_str(), w0, h0, (long long)tw, (long long)th, (long long)img.pw, (long long)img.ph,
                 (long long)S, a->out.c_str(), (long long)S, (long long)cfg.hidden_size, ms(t1 - t0), ms(t2 - t1));
  });
}

}  // namespace mlxq::cli
