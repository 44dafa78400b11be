// `mlxq serve`: the HTTP server (src/server/server.h) from the command line. SIGINT / SIGTERM
// stop it: a thread waits for them with sigwait, so the handler-side work is a plain call.
#include <signal.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include "mlxq/commands.h"
#include "server/server.h"

namespace mlxq::cli {

void register_serve(CLI::App& app) {
  auto o = std::make_shared<server::ServerOptions>();
  auto alias = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "OpenAI- and Anthropic-compatible HTTP server (/v1/chat/completions, /v1/responses, /v1/messages)");
  cmd->add_option("-m,--model", o->model_path, "Checkpoint directory (default: the embedded tiny-chat model)");
  cmd->add_option("--alias", *alias, "Model id clients see and name (default: the folder's name)");
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port (0: any free port, printed on stderr)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", o->slots, "Slots: conversations generated at once, batched together")
      ->capture_default_str()->check(CLI::Range(1, 64));
  cmd->add_option("-c,--ctx-size", o->ctx_size, "KV-cache positions per slot (prompt + answer)")
      ->capture_default_str()->check(CLI::Range(int64_t(16), int64_t(1) << 20));
  cmd->add_option("--queue", o->queue, "Requests that may wait for a slot before the server answers 503")
      ->capture_default_str()->check(CLI::Range(0, 4096));
  cmd->add_option("--max-wait", o->max_wait_s, "Seconds a request may wait for a slot before 503")
      ->capture_default_str()->check(CLI::Range(1, 86400));
  cmd->add_option("--api-key", o->api_key, "Require this key (Authorization: Bearer KEY or x-api-key)");
  cmd->add_option("-t,--threads", o->threads, "Compute threads (0: all cores)")->capture_default_str();
  cmd->add_option("--timeout", o->read_timeout_s, "Seconds a client may stall while sending its request")
      ->capture_default_str()->check(CLI::Range(1, 3600));
  cmd->add_option("--max-body", o->max_body_bytes, "Largest request body in bytes")->capture_default_str();
  cmd->add_flag("--exact", o->exact, "f32 activations in every matmul (slower; the golden-logit path)");
  cmd->add_option("--max-soft-tokens", o->max_soft_tokens, "Soft tokens per image: 70, 140, 280, 560 or 1120 (default: the checkpoint's)")
      ->check(CLI::IsMember({70, 140, 280, 560, 1120}));
  cmd->add_flag("--int8", o->int8, "One int8 part per activation: less arithmetic per batched row, further from exact (mean KL ~1e-2)");
  cmd->callback([o, alias] {
    server::ServerOptions opt = *o;
    opt.model_id = *alias;
    if (opt.model_path.empty()) {
      opt.model_path = default_model_path();
      if (opt.model_id.empty()) opt.model_id = "tiny-chat";
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts: they all inherit it
    std::signal(SIGPIPE, SIG_IGN);
    server::Server srv(opt);
    std::thread waiter([&srv, set] {
      int sig = 0;
      sigwait(&set, &sig);
      std::fprintf(stderr, "mlxq serve: signal %d, stopping\n", sig);
      srv.stop();
    });
    const bool ok = srv.run();
    if (!ok) std::fprintf(stderr, "mlxq serve: cannot listen on %s:%d\n", opt.host.c_str(), opt.port);
    pthread_kill(waiter.native_handle(), SIGTERM);  // wakes the waiter when the server stopped on its own
    waiter.join();
    if (!ok) throw CLI::RuntimeError(1);
  });
}

}  // namespace mlxq::cli
