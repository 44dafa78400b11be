// The model card's usage in C++: load a session, send a message, stream the answer.
//   build/examples/chat_session [MODEL_DIR|-] ["your message"]
// With no MODEL_DIR (or "-") it runs the embedded default model (mlxq/default_model.h).
// (TypeScript original: const session = await loadSession(path);
//  for await (const e of session.sendStream(text, {config})) ...)
#include <cstdio>
#include <exception>

#include <string>

#include "mlxq/default_model.h"
#include "mlxq/session.h"

int main(int argc, char** argv) {
  try {
    std::string path = argc > 1 ? argv[1] : "-";
    if (path == "-") {
      std::fprintf(stderr, "using the embedded default model: %s\n", mlxq::default_model_description().c_str());
      path = mlxq::default_model_path();
    }
    mlxq::SessionOptions options;
    options.system = "You are a helpful assistant. Be concise.";
    auto session = mlxq::load_session(path, {}, options);
    mlxq::ChatConfig config;
    config.max_new_tokens = 256;
    config.temperature = 0.6f;
    config.reasoning_effort = "low";  // thinking off
    const char* message = argc > 2 ? argv[2] : "What is the capital of France?";
    session->send_stream(message, config, [](const mlxq::StreamEvent& e) {
      if (!e.done) {
        std::printf("%s", e.text.c_str());
        std::fflush(stdout);
        return;
      }
      const auto& p = e.result->performance;
      std::printf("\n[%s | %d tokens | TTFT %.1f ms | prefill %.1f tok/s | decode %.1f tok/s]\n",
                  mlxq::to_string(e.result->finish_reason), e.result->num_tokens, p.ttft_ms,
                  p.prefill_tokens_per_second, p.decode_tokens_per_second);
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
