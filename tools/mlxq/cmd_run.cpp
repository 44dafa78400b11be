// `mlxq run` (one streamed answer, images with --image) and `mlxq chat` (an interactive REPL:
// streaming, reasoning shown distinctly, /image, /reset, /system, /stats, Ctrl-C stops the answer
// and not the program).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>

#include "mlxq/chat_options.h"
#include "mlxq/commands.h"

namespace mlxq::cli {

namespace {

// Streams deltas to stdout; reasoning is dim on a terminal and bracketed otherwise.
class Printer {
 public:
  explicit Printer(bool tty) : tty_(tty) {}
  void operator()(const StreamEvent& e) {
    if (e.done) {
      end_reasoning();
      return;
    }
    if (e.is_reasoning && !in_reasoning_) {
      std::fputs(tty_ ? "\033[2m" : "[thinking] ", stdout);
      in_reasoning_ = true;
    } else if (!e.is_reasoning) {
      end_reasoning();
    }
    std::fwrite(e.text.data(), 1, e.text.size(), stdout);
    std::fflush(stdout);
  }

 private:
  void end_reasoning() {
    if (!in_reasoning_) return;
    std::fputs(tty_ ? "\033[0m\n" : "\n[/thinking]\n", stdout);
    in_reasoning_ = false;
  }
  bool tty_;
  bool in_reasoning_ = false;
};

std::atomic<Session*> g_session{nullptr};
volatile sig_atomic_t g_interrupted = 0;

void on_sigint(int) {
  g_interrupted = 1;
  if (Session* s = g_session.load()) s->cancel();  // sets an atomic flag: async-signal-safe
}

void print_stats(const ChatResult& r, const Session& s) {
  std::printf("turns %d, context %zu tokens | last: %d prompt (%d cached, %d prefilled), %d generated, %s\n",
              s.turns(), s.history().size(), r.prompt_tokens, r.cached_tokens, r.prefill_tokens, r.num_tokens,
              to_string(r.finish_reason));
  std::printf("TTFT %.1f ms | prefill %.1f tok/s | decode %.1f tok/s\n", r.performance.ttft_ms,
              r.performance.prefill_tokens_per_second, r.performance.decode_tokens_per_second);
}

}  // namespace

void register_run(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  auto prompt = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto image_paths = std::make_shared<std::vector<std::string>>();
  CLI::App* run = app.add_subcommand("run", "Answer one prompt, streaming the answer");
  a->add_to(run);
  run->add_option("-p,--prompt", *prompt, "The user message")->required();
  run->add_option("--image", *image_paths, "An image to show the model before the prompt (repeatable; PNG, JPEG, WebP, BMP, GIF)");
  run->add_flag("--json", *json, "Print the final event (answer, tool calls, performance) as JSON instead");
  run->callback([a, prompt, json, image_paths] {
    std::vector<ImageInput> images;
    for (const std::string& p : *image_paths) images.push_back(ImageInput::from_file(p));
    auto session = a->open();
    Printer print(isatty(1));
    const ChatResult r = *json ? session->send(*prompt, images, a->config())
                               : session->send_stream(*prompt, images, a->config(), std::ref(print));
    if (*json) {
      std::printf("%s\n", result_json(r).c_str());
    } else {
      std::printf("\n");
      for (const auto& c : r.tool_calls) std::printf("[tool call %s] %s(%s)\n", c.status.c_str(), c.name.c_str(), c.arguments_json.c_str());
      std::fprintf(stderr, "[%s | %d tokens | TTFT %.1f ms | prefill %.1f tok/s | decode %.1f tok/s]\n",
                   to_string(r.finish_reason), r.num_tokens, r.performance.ttft_ms,
                   r.performance.prefill_tokens_per_second, r.performance.decode_tokens_per_second);
    }
  });

  auto c = std::make_shared<ChatArgs>();
  CLI::App* chat = app.add_subcommand("chat", "Interactive chat (/image FILE, /reset, /system TEXT, /stats, /quit; Ctrl-C stops an answer)");
  c->add_to(chat);
  chat->callback([c] {
    auto session = c->open();
    const bool tty = isatty(1);
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a Ctrl-C interrupts the blocking read of a line
    sigaction(SIGINT, &sa, nullptr);
    g_session = session.get();
    std::printf("mlxq chat: %s. /help for commands, Ctrl-D to quit.\n", session->model_path().c_str());
    ChatResult last;
    bool have_last = false;
    std::vector<ImageInput> images;  // /image: shown with the next message
    std::string line;
    for (;;) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
      g_interrupted = 0;
      if (!std::getline(std::cin, line)) {
        if (g_interrupted) {  // Ctrl-C at the prompt: a fresh prompt, not an exit
          std::cin.clear();
          std::fputs("\n", stdout);
          continue;
        }
        std::fputs("\n", stdout);
        break;
      }
      if (line.empty()) continue;
      if (line == "/quit" || line == "/exit") break;
      if (line == "/help") {
        std::printf("/image FILE  show an image with the next message (repeatable)\n"
                    "/reset  clear the conversation\n/system TEXT  set the system prompt (clears the conversation)\n"
                    "/stats  figures of the last answer\n/quit  leave (or Ctrl-D)\nCtrl-C stops an answer.\n");
        continue;
      }
      if (line.rfind("/image", 0) == 0 && (line.size() == 6 || line[6] == ' ')) {
        const std::string path = line.size() > 7 ? line.substr(7) : "";
        if (path.empty()) {
          std::printf("[usage: /image FILE]\n");
          continue;
        }
        try {
          images.push_back(ImageInput::from_file(path));
          std::printf("[image %zu: %s, %zu bytes; sent with your next message]\n", images.size(), path.c_str(),
                      images.back().bytes.size());
        } catch (const std::exception& e) {
          std::printf("[error: %s]\n", e.what());
        }
        continue;
      }
      if (line == "/reset") {
        session->reset();
        images.clear();
        std::printf("[conversation cleared]\n");
        continue;
      }
      if (line.rfind("/system", 0) == 0) {
        session->reset();
        session->set_system(line.size() > 8 ? line.substr(8) : "");
        std::printf("[system prompt set; conversation cleared]\n");
        continue;
      }
      if (line == "/stats") {
        if (have_last) print_stats(last, *session);
        else std::printf("[no answer yet]\n");
        continue;
      }
      Printer print(tty);
      try {
        std::vector<ImageInput> shown;
        shown.swap(images);
        last = session->send_stream(line, shown, c->config(), std::ref(print));
        have_last = true;
        std::printf("\n");
        for (const auto& call : last.tool_calls)
          std::printf("[tool call %s] %s(%s)\n", call.status.c_str(), call.name.c_str(), call.arguments_json.c_str());
        if (last.finish_reason == FinishReason::Cancelled) std::printf("[stopped]\n");
        if (last.finish_reason == FinishReason::Length) std::printf("[length limit]\n");
      } catch (const std::exception& e) {
        std::printf("\n[error: %s]\n", e.what());
      }
    }
    g_session = nullptr;
  });
}

}  // namespace mlxq::cli
