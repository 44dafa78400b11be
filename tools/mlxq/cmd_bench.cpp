// `mlxq bench`: (a) --capitals, the model card's four-turn chat (session-and-benchmark.md §7),
// with its TTFT gate and the headline "best decode tok/s over turns 2-4"; (b) a llama-bench-like
// grid (-p prompt tokens, -n generated tokens, -r repetitions) printing mean +- sd per test.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/error.h"
#include "engine/cpu_features.h"
#include "mlxq/chat_options.h"
#include "mlxq/commands.h"
#include "model/gemma4/model.h"

namespace mlxq::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct Stat { double mean = 0, sd = 0; };
Stat stat(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x / double(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / double(v.size() - 1)) : 0;
  return s;
}

int capitals(const ChatArgs& a, bool json, bool quiet) {
  ChatArgs args = a;
  if (args.system.empty()) args.system = "You are a helpful assistant. Be concise.";
  auto session = args.open();
  ChatConfig cfg = args.config();
  if (!cfg.max_new_tokens) cfg.max_new_tokens = 2048;
  if (!cfg.temperature) cfg.temperature = 0.6f;
  if (!cfg.reasoning_effort) cfg.reasoning_effort = "low";
  const char* turns[] = {"What is the capital of France?", "What about Germany?", "And Japan?",
                         "Which of those three cities has the largest population?"};
  std::vector<ChatResult> rs;
  for (int i = 0; i < 4; ++i) {
    const ChatResult r = session->send_stream(turns[i], cfg, [&](const StreamEvent& e) {
      if (!quiet && !json && !e.done) {
        std::fwrite(e.text.data(), 1, e.text.size(), stdout);
        std::fflush(stdout);
      }
    });
    if (!json)
      std::printf("%sTurn %d (session sendStream) | Stop reason: %s | %d tokens | TTFT %.1f ms | Prefill %.1f tok/s | Decode %.1f tok/s\n",
                  quiet ? "" : "\n", i + 1, to_string(r.finish_reason), r.num_tokens, r.performance.ttft_ms,
                  r.performance.prefill_tokens_per_second, r.performance.decode_tokens_per_second);
    rs.push_back(r);
  }
  double best = 0;
  for (int i = 1; i < 4; ++i) best = std::max(best, rs[size_t(i)].performance.decode_tokens_per_second);
  const double t1 = rs[0].performance.ttft_ms, t2 = rs[1].performance.ttft_ms, t4 = rs[3].performance.ttft_ms;
  const bool fail = t4 / t1 >= 1.5 || t4 >= 2 * t2;
  if (json) {
    nlohmann::ordered_json j;
    j["model"] = session->model_path();
    j["threads"] = args.threads > 0 ? args.threads : int(std::thread::hardware_concurrency());
    for (int i = 0; i < 4; ++i) {
      const auto& r = rs[size_t(i)];
      j["turns"].push_back({{"turn", i + 1}, {"text", r.text}, {"finish_reason", to_string(r.finish_reason)},
                            {"tokens", r.num_tokens},
                            {"prompt_tokens", r.prompt_tokens}, {"cached_tokens", r.cached_tokens},
                            {"prefill_tokens", r.prefill_tokens}, {"ttft_ms", r.performance.ttft_ms},
                            {"prefill_tokens_per_second", r.performance.prefill_tokens_per_second},
                            {"decode_tokens_per_second", r.performance.decode_tokens_per_second}});
    }
    j["best_decode_tokens_per_second_turns_2_4"] = best;
    j["ttft_gate"] = fail ? "FAIL" : "PASS";
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("\n| turn | TTFT ms | prompt tokens | cached | prefilled |\n|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < 4; ++i) {
      const auto& r = rs[size_t(i)];
      std::printf("| %d | %.1f | %d | %d | %d |\n", i + 1, r.performance.ttft_ms, r.prompt_tokens, r.cached_tokens,
                  r.prefill_tokens);
    }
    std::printf("\n%s: TTFT4/TTFT1 = %.2f, TTFT4/TTFT2 = %.2f\n", fail ? "FAIL" : "PASS: TTFT flat across 4 turns",
                t4 / t1, t4 / t2);
    std::printf("best decode tok/s over turns 2-4: %.2f\n", best);
  }
  return fail ? 1 : 0;
}

int grid(const ChatArgs& a, const std::vector<int>& pp, const std::vector<int>& tg, int reps, bool json,
         double bw_gib) {
  model::gemma4::ModelOptions mo;
  mo.threads = a.threads;
  mo.exact = a.exact;
  mo.int8 = a.int8;
  mo.interleaved = a.interleaved;
  mo.max_chunk = 512;
  model::gemma4::Model model(a.model.empty() ? default_model_path() : a.model, mo);
  const int64_t V = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(V));
  std::mt19937 rng(1234);
  auto run_pp = [&](int n) {
    std::vector<int32_t> toks(static_cast<size_t>(n));
    for (auto& t : toks) t = int32_t(std::uniform_int_distribution<int64_t>(4, V - 1)(rng));
    toks[0] = 2;
    auto cache = model.make_cache(n + 1);
    const auto t0 = Clock::now();
    model.forward(toks, cache, logits.data(), false);
    return double(n) / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  auto run_tg = [&](int n) {
    auto cache = model.make_cache(n + 2);
    int32_t tok = 2;
    model.forward(std::span(&tok, 1), cache, logits.data(), false);  // start from <bos>, untimed
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {  // the generation length is forced: stop tokens are ignored
      tok = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
      model.forward(std::span(&tok, 1), cache, logits.data(), false);
    }
    return double(n) / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  struct Row { std::string test; Stat s; std::vector<double> v; };
  std::vector<Row> rows;
  auto measure = [&](const std::string& name, const std::function<double()>& f) {
    f();  // warm-up (page cache, first touches)
    Row r{name, {}, {}};
    for (int i = 0; i < reps; ++i) r.v.push_back(f());
    r.s = stat(r.v);
    rows.push_back(r);
  };
  // The bandwidth limit, measured with the same threads before and after the tests (best of both).
  double bw = 0;
  auto probe = [&] {
    if (bw_gib > 0) bw = std::max(bw, engine::measure_read_bandwidth_gbps(model.pool(), size_t(bw_gib * double(1 << 30)), 5));
  };
  probe();
  for (int p : pp) if (p > 0) measure("pp" + std::to_string(p), [&] { return run_pp(p); });
  for (int n : tg) if (n > 0) measure("tg" + std::to_string(n), [&] { return run_tg(n); });
  probe();
  const int threads = model.pool().size();
  const double gb = double(model.checkpoint().total_bytes()) / 1e9, per_tok = double(model.bytes_per_token()) / 1e9;
  // Decode streams bytes_per_token per token: its GB/s and the fraction of the probe's GB/s.
  auto gbs = [&](const Row& r) { return r.test.rfind("tg", 0) == 0 ? r.s.mean * per_tok : 0.0; };
  if (json) {
    nlohmann::ordered_json j;
    j["model"] = model.checkpoint().dir();
    j["size_gb"] = gb;
    j["bytes_per_token_gb"] = per_tok;
    j["threads"] = threads;
    j["precision"] = (a.exact ? "exact" : a.int8 ? "int8" : "fast");
    j["interleaved"] = model.interleaved_path();
    j["bandwidth_gb_per_s"] = bw;
    j["bandwidth_limit_tokens_per_second"] = bw > 0 ? bw / per_tok : 0.0;
    for (const auto& r : rows) {
      nlohmann::ordered_json t = {{"test", r.test}, {"tokens_per_second_mean", r.s.mean},
                                  {"tokens_per_second_sd", r.s.sd}, {"samples", r.v}};
      if (gbs(r) > 0) {
        t["weights_gb_per_s"] = gbs(r);
        if (bw > 0) t["fraction_of_bandwidth"] = gbs(r) / bw;
      }
      j["tests"].push_back(t);
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("| model | size | GB/token | threads | test | t/s | GB/s | of bandwidth |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& r : rows) {
      char extra[64] = "| - | -";
      if (gbs(r) > 0 && bw > 0) std::snprintf(extra, sizeof extra, "| %.1f | %.0f%%", gbs(r), 100.0 * gbs(r) / bw);
      std::printf("| %s | %.2f GB | %.3f | %d | %s | %.2f ± %.2f %s |\n", model.checkpoint().dir().c_str(), gb, per_tok,
                  threads, r.test.c_str(), r.s.mean, r.s.sd, extra);
    }
    if (bw > 0)
      std::printf("\nread bandwidth (%d threads, %.1f GiB buffer, best pass): %.1f GB/s; decode limit %.2f t/s; %s precision\n",
                  threads, bw_gib, bw, bw / per_tok, (a.exact ? "exact" : a.int8 ? "int8" : "fast"));
    std::printf("weights: %s%s\n",
                model.interleaved_path().empty() ? "checkpoint layout"
                                                 : ("interleaved, " + model.interleaved_path()).c_str(),
                !a.exact && engine::amx_prefill_active() ? "; prompt matmuls on AMX tiles" : "");
  }
  return 0;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  struct B {
    bool capitals = false, json = false, quiet = false;
    std::vector<int> pp{512}, tg{128};
    int reps = 5;
    double bw_gib = 1.0;
  };
  auto b = std::make_shared<B>();
  CLI::App* cmd = app.add_subcommand("bench", "Benchmarks: --capitals chat, or a llama-bench-like -p/-n/-r grid");
  a->add_to(cmd);
  cmd->add_flag("--capitals", b->capitals, "The model card's four-turn capitals chat (TTFT gate, best decode tok/s of turns 2-4)");
  cmd->add_option("-p,--n-prompt", b->pp, "Prompt lengths to time (pp tests; comma-separated or repeated)")
      ->delimiter(',');
  cmd->add_option("-n,--n-gen", b->tg, "Generation lengths to time (tg tests; stop tokens ignored)")->delimiter(',');
  cmd->add_option("-r,--repetitions", b->reps, "Repetitions per test")->check(CLI::PositiveNumber);
  cmd->add_flag("--json", b->json, "Machine-readable output");
  cmd->add_option("--bandwidth-gib", b->bw_gib, "Buffer of the read-bandwidth probe run before and after the grid (0: skip)")
      ->check(CLI::Range(0.0, 16.0));
  cmd->add_flag("--quiet", b->quiet, "--capitals: do not print the answers");
  cmd->callback([a, b] {
    const int rc = b->capitals ? capitals(*a, b->json, b->quiet) : grid(*a, b->pp, b->tg, b->reps, b->json, b->bw_gib);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace mlxq::cli
