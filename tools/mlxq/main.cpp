// mlxq command-line entry point: dispatches to the subcommands and turns every error into one
// line on stderr and a non-zero exit.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>

#include "core/thread_pool.h"
#include "mlxq/commands.h"
#include "model/gemma4/synthetic.h"

namespace fs = std::filesystem;

namespace mlxq::cli {

std::string default_model_path() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  fs::path base = xdg && *xdg ? fs::path(xdg) : fs::path(home && *home ? home : ".") / ".cache";
  const fs::path dir = base / "mlxq" / "default-tiny-v1";
  std::cerr << "mlxq: no -m given: using the embedded default, a tiny synthetic Gemma-4 model with "
               "random weights (" << dir.string() << ")\n";
  if (!fs::exists(dir / "config.json")) {
    model::gemma4::SyntheticOptions opt;
    opt.preset = "tiny";
    opt.seed = 1;
    ThreadPool pool;
    model::gemma4::write_synthetic_model(dir.string(), opt, pool);
  }
  return dir.string();
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlxq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
