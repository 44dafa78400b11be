// `mlxq convert`: HF BF16 -> MLX (optionally quantized by a recipe), with the reference tool's
// flag names and defaults; a progress bar with throughput and ETA on a terminal.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "convert/convert.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "mlxq/commands.h"

namespace mlxq::cli {

void register_convert(CLI::App& app) {
  struct Args {
    quant::ConvertOptions o;
    std::string dtype = "bfloat16", o_proj = "bf16", rounding = "cpu", mode = "affine", imatrix;
    bool no_awq = false, verbose = false, awq_report = false, no_awq_experts = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert an HF BF16 checkpoint to MLX (optionally quantized)");
  cmd->add_option("-i,--input", a->o.input, "HF checkpoint directory (or one .safetensors file)")->required();
  cmd->add_option("-o,--output", a->o.output, "Output directory")->required();
  cmd->add_option("-d,--dtype", a->dtype, "bfloat16 | float16 | float32")->check(CLI::IsMember({"bfloat16", "float16", "float32"}));
  cmd->add_flag("-q,--quantize", a->o.quantize, "Quantize");
  cmd->add_option("--q-bits", a->o.bits, "Bits (2,3,4,5,6,8; default 4, or 3 with --q-recipe unsloth)");
  cmd->add_option("--q-group-size", a->o.group_size, "Group size (32, 64, 128)");
  cmd->add_option("--q-mode", a->mode, "Quantization mode (affine)");
  cmd->add_option("--q-recipe", a->o.recipe, "unsloth | mixed_2_6 | mixed_3_4 | mixed_3_6 | mixed_4_6 (default: uniform)");
  cmd->add_option("--q-overrides", a->o.overrides_path, "JSON object: regex over tensor names -> {bits, group_size} or \"bf16\"");
  cmd->add_option("--imatrix-path", a->imatrix, "Importance matrix (llama.cpp GGUF or .dat) for AWQ pre-scaling");
  cmd->add_flag("--no-awq", a->no_awq, "Do not apply AWQ pre-scaling");
  cmd->add_flag("--no-awq-experts", a->no_awq_experts, "AWQ as the reference: leave the experts unscaled");
  cmd->add_flag("--awq-report", a->awq_report, "List every AWQ-scaled tensor and its fold target");
  cmd->add_option("--o-proj", a->o_proj, "unsloth recipe: o_proj as bf16 (published card) or 8 (8-bit, current mlx-node)")
      ->check(CLI::IsMember({"bf16", "8"}));
  cmd->add_option("--quant-rounding", a->rounding, "cpu (MLX CPU kernel) | metal (Apple GPU kernel)")->check(CLI::IsMember({"cpu", "metal"}));
  cmd->add_flag("--force", a->o.force, "Overwrite an existing output directory");
  cmd->add_flag("--no-vision", [a](int64_t) { a->o.vision = false; }, "Leave out the vision tower (a text-only checkpoint)");
  cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)");
  cmd->add_flag("-v,--verbose", a->verbose, "Print every tensor");
  cmd->callback([a] {
    check(a->mode == "affine", "--q-mode " + a->mode + " is not supported (affine only)");
    quant::ConvertOptions o = a->o;
    o.dtype = a->dtype == "float32" ? DType::F32 : a->dtype == "float16" ? DType::F16 : DType::BF16;
    o.o_proj_bf16 = a->o_proj == "bf16";
    o.rounding = a->rounding == "metal" ? quant::Rounding::Metal : quant::Rounding::Cpu;
    o.imatrix_path = a->imatrix;
    o.awq = !a->no_awq;
    o.awq_experts = !a->no_awq_experts;
    std::vector<std::string> report;
    o.awq_report = &report;
    if (!a->imatrix.empty()) std::fprintf(stderr, "imatrix: %s\n", a->imatrix.c_str());
    if (o.recipe == "unsloth" && a->imatrix.empty() && o.quantize)
      std::fprintf(stderr, "warning: --q-recipe unsloth without --imatrix-path: no AWQ pre-scaling is applied\n");
    std::fprintf(stderr, "Input: %s\nOutput: %s\nDtype: %s\n", o.input.c_str(), o.output.c_str(), a->dtype.c_str());
    if (o.quantize)
      std::fprintf(stderr, "Quantize: %d-bit affine (group_size=%d), recipe=%s\n",
                   o.bits > 0 ? o.bits : (o.recipe == "unsloth" ? 3 : 4), o.group_size,
                   o.recipe.empty() ? "uniform" : o.recipe.c_str());
    ThreadPool pool(a->threads);
    const bool tty = isatty(2);
    const auto t0 = std::chrono::steady_clock::now();
    const auto st = quant::convert_checkpoint(o, pool, [&](size_t i, size_t n, uint64_t bytes, const std::string& name) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double rate = s > 0 ? double(bytes) / 1e9 / s : 0;
      if (a->verbose) std::fprintf(stderr, "%s\n", name.c_str());
      if (tty) {
        const int w = 30, fill = int(double(i) / double(n) * w);
        const double eta = i ? s / double(i) * double(n - i) : 0;
        std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu tensors  %.2f GB/s  ETA %.0fs ", fill,
                     "##############################", w - fill, "", i, n, rate, eta);
      } else if (i % 50 == 0 || i == n) {
        std::fprintf(stderr, "Quantized %zu/%zu tensors... (%.2f GB/s)\n", i, n, rate);
      }
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!o.imatrix_path.empty() && o.awq) {
      std::fprintf(stderr, "%sAWQ pre-scaling complete: modified %zu\n", tty ? "\n" : "", st.awq_modified);
      if (a->awq_report)
        for (const auto& line : report) std::printf("%s\n", line.c_str());
    }
    std::fprintf(stderr, "%sQuantization complete: %zu quantized, %zu per-layer overrides\n", tty ? "\n" : "",
                 st.quantized, st.overrides);
    std::fprintf(stderr, "Saved %zu tensors (%.2f GB) in %zu shard(s)\n", st.tensors, double(st.bytes_out) / 1e9, st.shards);
    std::fprintf(stderr, "✓ Conversion complete! %s in %.1fs (%.2f GB/s read)\n", o.output.c_str(), s,
                 s > 0 ? double(st.bytes_in) / 1e9 / s : 0);
  });
}

}  // namespace mlxq::cli
