// `mlxq repack`: writes the interleaved weights file of a quantized checkpoint (one memory stream
// per 16 rows for the AVX-512 int8 kernel; src/model/gemma4/interleaved_file.h), which `run`,
// `chat`, `bench` and sessions then map instead of reading the checkpoint's own layout.
#include <chrono>
#include <cstdio>

#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "mlxq/commands.h"
#include "model/gemma4/config.h"
#include "model/gemma4/interleaved_file.h"
#include "model/gemma4/weights.h"

namespace mlxq::cli {

void register_repack(CLI::App& app) {
  struct A {
    std::string model, out;
    int threads = 0;
  };
  auto a = std::make_shared<A>();
  CLI::App* cmd = app.add_subcommand(
      "repack", "Write the interleaved weights file the AVX-512 int8 kernel reads (<model>/mlxq-interleaved.bin)");
  cmd->add_option("-m,--model", a->model, "Checkpoint directory (MLX, affine-quantized)")->required();
  cmd->add_option("-o,--out", a->out, "Output file (default: <model>/mlxq-interleaved.bin)");
  cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)");
  cmd->callback([a] {
    using namespace model::gemma4;
    const auto t0 = std::chrono::steady_clock::now();
    io::Checkpoint ckpt(a->model);
    const Gemma4Config cfg = load_config(ckpt.dir().empty() ? "." : ckpt.dir());
    const Gemma4Weights w = bind_weights(ckpt, cfg);
    ThreadPool pool(a->threads);
    const std::string out = a->out.empty() ? default_interleaved_path(ckpt) : a->out;
    const RepackStats st = write_interleaved(ckpt, w, out, pool);
    std::printf("%s: %lld tensors interleaved, %.2f GB, %.1f s\n", out.c_str(), (long long)st.tensors,
                double(st.bytes) / 1e9, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  });
}

}  // namespace mlxq::cli
