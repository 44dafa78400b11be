// Memory of sessions sharing one model: loads a checkpoint once, then opens sessions one after
// another, each running the same turn, and reports the process's resident memory after each
// step, split into file-backed pages (the mapped weights, shared by every session) and anonymous
// ones (workspace, KV caches, logits), against each session's KV-cache bytes. A second session
// should add its KV cache and its logits vector, nothing of the weights.
// Run: build/bench/sessions_bench MODEL [--sessions N] [--tokens N] [--threads N]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "mlxq/session.h"

namespace {

struct Rss {
  double anon_mb = 0, file_mb = 0;
};

Rss rss() {
  std::ifstream f("/proc/self/status");
  std::string key;
  Rss r;
  while (f >> key) {
    double kb = 0;
    if (key == "RssAnon:" && f >> kb) r.anon_mb = kb / 1024;
    if (key == "RssFile:" && f >> kb) r.file_mb = kb / 1024;
  }
  return r;
}

void report(const char* what, const Rss& r, const Rss& before) {
  std::printf("| %-34s | %9.1f | %9.1f | %+9.1f | %+9.1f |\n", what, r.anon_mb, r.file_mb, r.anon_mb - before.anon_mb,
              r.file_mb - before.file_mb);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--sessions N] [--tokens N] [--threads N]\n", argv[0]);
    return 2;
  }
  int sessions = 2, tokens = 32, threads = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--sessions") sessions = v;
    else if (a == "--tokens") tokens = v;
    else if (a == "--threads") threads = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    const Rss start = rss();
    mlxq::LoadOptions lo;
    lo.threads = threads;
    const auto model = mlxq::load_model(argv[1], lo);
    Rss prev = rss();
    std::printf("| step | RssAnon MB | RssFile MB | d anon | d file |\n|---|---|---|---|---|\n");
    report("load_model", prev, start);
    std::vector<std::unique_ptr<mlxq::Session>> open;
    for (int s = 0; s < sessions; ++s) {
      open.push_back(model->create_session());
      Rss now = rss();
      report(("session " + std::to_string(s + 1) + ": create").c_str(), now, prev);
      prev = now;
      mlxq::ChatConfig c;
      c.temperature = 0.0f;
      c.max_new_tokens = tokens;
      c.ignore_eos = true;
      const mlxq::ChatResult r = open.back()->send("What is the capital of France?", c);
      now = rss();
      char what[96];
      std::snprintf(what, sizeof what, "session %d: turn (%d+%d tokens)", s + 1, r.prompt_tokens, r.num_tokens);
      report(what, now, prev);
      std::printf("|   KV cache of session %d: %.1f MB held, %.1f MB reserved | | | | |\n", s + 1,
                  double(open.back()->kv_cache_bytes()) / (1 << 20),
                  double(open.back()->kv_cache_reserved_bytes()) / (1 << 20));
      prev = now;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sessions_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
