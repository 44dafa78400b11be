// `mlxq make-model`: writes a synthetic Gemma-4 checkpoint in the real layout.
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <unistd.h>

#include "convert/synthetic.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "mlxq/commands.h"

namespace mlxq::cli {

void register_make_model(CLI::App& app) {
  struct Args {
    std::string out, preset = "tiny", dtype = "bf16", format = "hf", tokenizer, recipe, o_proj = "bf16", init = "stable";
    float layer_update = 0.1f;
    int64_t layers = 0;
    uint64_t seed = 0;
    int bits = -1, group = 64, threads = 0;
    bool force = false, quiet = false, no_vision = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("make-model", "Write a synthetic Gemma-4 checkpoint (random weights, real layout)");
  cmd->add_option("-o,--output", args->out, "Output directory")->required();
  cmd->add_option("--preset", args->preset, "tiny | small | 26b-a4b")->check(CLI::IsMember({"tiny", "small", "26b-a4b"}));
  cmd->add_option("--layers", args->layers, "Number of layers (keeps the 5 sliding : 1 full pattern)")
      ->check(CLI::Range(int64_t(1), int64_t(1000)));
  cmd->add_option("--seed", args->seed, "Random seed");
  cmd->add_option("--init", args->init,
                  "stable: each layer updates the residual by a set fraction, like a trained model (default); "
                  "iid: every tensor at a fixed scale (a chaotic deep network)")
      ->check(CLI::IsMember({"stable", "iid"}));
  cmd->add_option("--layer-update", args->layer_update, "stable: RMS of each branch output / RMS of the residual")
      ->check(CLI::Range(0.01f, 4.0f));
  cmd->add_option("--dtype", args->dtype, "bf16 | f32")->check(CLI::IsMember({"bf16", "f32"}));
  cmd->add_option("--format", args->format, "hf | mlx")->check(CLI::IsMember({"hf", "mlx"}));
  cmd->add_option("--q-bits", args->bits, "MLX format: bits (2,3,4,5,6,8; default 4, or 3 with --q-recipe unsloth)")->check(CLI::IsMember({2, 3, 4, 5, 6, 8}));
  cmd->add_option("--q-group-size", args->group, "MLX format: group size (32,64,128)")->check(CLI::IsMember({32, 64, 128}));
  cmd->add_option("-t,--threads", args->threads, "Threads (0: all cores)");
  cmd->add_option("--q-recipe", args->recipe, "MLX format: quantize with a recipe as it generates (unsloth, mixed_*)");
  cmd->add_option("--o-proj", args->o_proj, "unsloth recipe: o_proj bf16 or 8")->check(CLI::IsMember({"bf16", "8"}));
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.json to include (default for 262144-token presets: the build's derived Gemma 4 one)");
  cmd->add_flag("--no-vision", args->no_vision, "No vision tower (default: one in the real layout, gemma4-architecture.md §10)");
  cmd->add_flag("--force", args->force, "Overwrite an existing output directory");
  cmd->add_flag("-q,--quiet", args->quiet, "No progress output");
  cmd->callback([args] {
    model::gemma4::SyntheticOptions opt;
    opt.preset = args->preset;
    opt.layers = args->layers;
    opt.seed = args->seed;
    opt.init = args->init == "iid" ? model::gemma4::SyntheticInit::Iid : model::gemma4::SyntheticInit::Stable;
    opt.layer_update = args->layer_update;
    opt.dtype = args->dtype == "f32" ? DType::F32 : DType::BF16;
    opt.format = args->format == "mlx" ? model::gemma4::CheckpointFormat::MLX : model::gemma4::CheckpointFormat::HF;
    opt.quant = {args->bits > 0 ? args->bits : (args->recipe == "unsloth" ? 3 : 4), args->group};
    opt.recipe = args->recipe;
    opt.o_proj_bf16 = args->o_proj == "bf16";
    check(opt.recipe.empty() || opt.format == model::gemma4::CheckpointFormat::MLX, "make-model: --q-recipe needs --format mlx");
    opt.overwrite = args->force;
    opt.vision = !args->no_vision;
    opt.tokenizer_json = args->tokenizer;
    if (opt.tokenizer_json.empty() && opt.preset != "tiny") {
      opt.tokenizer_json = derived_tokenizer_path();
      if (opt.tokenizer_json.empty())
        std::fprintf(stderr, "make-model: no derived Gemma 4 tokenizer.json found; the checkpoint has none\n");
    }
    ThreadPool pool(args->threads);
    const auto t0 = std::chrono::steady_clock::now();
    const bool tty = isatty(2);
    model::gemma4::write_synthetic_model(args->out, opt, pool, [&](size_t i, size_t n, const std::string& name) {
      if (args->quiet) return;
      if (tty) std::fprintf(stderr, "\r[%zu/%zu] %-80.80s", i, n, name.c_str());
      else if (i == n || i % 50 == 0) std::fprintf(stderr, "[%zu/%zu] %s\n", i, n, name.c_str());
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!args->quiet) std::fprintf(stderr, "%swrote %s in %.1f s\n", tty ? "\n" : "", args->out.c_str(), s);
  });
}

}  // namespace mlxq::cli
