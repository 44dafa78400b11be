// Command-line options shared by `run`, `chat` and `bench`: model, threads, context and the
// sampling / reasoning settings of a ChatConfig; and the final result as JSON.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "mlxq/session.h"

namespace mlxq::cli {

struct ChatArgs {
  std::string model, system, reasoning_effort;
  int threads = 0;
  bool exact = false;
  bool int8 = false;
  bool ignore_eos = false;
  std::string interleaved = "auto";
  int64_t max_context = 8192;
  int64_t max_soft_tokens = 0;
  int max_tokens = -1, top_k = -1;
  double temp = -1, top_p = -1, min_p = -1;
  int64_t seed = -1;
  std::vector<std::string> stop;

  void add_to(CLI::App* cmd);
  ChatConfig config() const;  // only the fields given on the command line are set
  std::unique_ptr<Session> open() const;  // the model (or the embedded default), as a session
};

std::string result_json(const ChatResult& r);  // the final event, with llama.cpp-style timings

}  // namespace mlxq::cli
