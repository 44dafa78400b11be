// mlxq command-line entry point: dispatches to the subcommands and turns every error into one
// line on stderr and a non-zero exit.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <exception>
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "engine/cpu_features.h"
#include "mlxq/commands.h"
#include "mlxq/default_model.h"

namespace fs = std::filesystem;

namespace mlxq::cli {

std::string derived_tokenizer_path() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const fs::path p = exe.parent_path() / "gemma4-tokenizer.json";
  return !ec && fs::exists(p) ? p.string() : std::string();
}

std::string default_model_path() {
  DefaultModelOptions opt;
  opt.log = [](const std::string& line) { std::cerr << "mlxq: default model, first use: " << line << "\n"; };
  const std::string dir = mlxq::default_model_path(opt);
  std::cerr << "mlxq: no -m given: using the embedded default, " << default_model_description() << " (" << dir
            << ")\n";
  return dir;
}

}  // namespace mlxq::cli

int main(int argc, char** argv) {
  CLI::App app{"mlxq: run and make MLX-format mixed-precision Gemma-4 checkpoints on CPUs"};
  app.require_subcommand(1);
  mlxq::cli::register_make_model(app);
  mlxq::cli::register_logits(app);
  mlxq::cli::register_inspect(app);
  mlxq::cli::register_tokenize(app);
  mlxq::cli::register_template(app);
  mlxq::cli::register_run(app);
  mlxq::cli::register_bench(app);
  mlxq::cli::register_convert(app);
  mlxq::cli::register_imatrix(app);
  mlxq::cli::register_quant_error(app);
  mlxq::cli::register_repack(app);
  mlxq::cli::register_render_chats(app);
  mlxq::cli::register_eval(app);
  mlxq::cli::register_serve(app);
  mlxq::cli::register_embed_image(app);
  try {
    // MLXQ_CPU=avx2: run the kernels a CPU without AVX-512 would (for comparisons on one machine).
    if (const char* cpu = std::getenv("MLXQ_CPU"); cpu && *cpu) {
      mlxq::check(std::string(cpu) == "avx2", std::string("MLXQ_CPU=") + cpu + ": the only value is avx2");
      mlxq::engine::emulate_avx2_cpu();
    }
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlxq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
