// `mlxq bench`: (a) --capitals, the model card's four-turn chat (session-and-benchmark.md §7),
// with its TTFT gate and the headline "best decode tok/s over turns 2-4"; (b) a llama-bench-like
// grid (-p prompt tokens, -n generated tokens, -b sequences decoding together, -r repetitions)
// printing mean +- sd per test. The grid takes its repetitions round-robin over the tests, so the
// machine's bandwidth drift falls on all of them alike; (c) --image, a one-image prompt at each
// soft-token budget: the vision tower's time and the TTFT (tower + prefill), round-robin too.
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

// A one-image prompt ("Describe this image." after the image) in a fresh session per repetition,
// one answer token: the tower's time (Performance::vision_ms) and TTFT per budget. The models of
// the budgets share the mapped weights; one untimed turn each warms them up.
int vision(const ChatArgs& a, const std::string& path, const std::vector<int>& budgets, int reps, bool json) {
  const ImageInput img = ImageInput::from_file(path);
  struct Row {
    int budget = 0;
    std::shared_ptr<Model> model;
    int prompt = 0, soft = 0;
    std::vector<double> tower, ttft;
  };
  std::vector<Row> rows;
  ChatConfig cfg = a.config();
  cfg.max_new_tokens = 1;
  cfg.temperature = 0.0f;
  const std::string text = "Describe this image.";
  for (int b : budgets) {
    ChatArgs args = a;
    args.max_soft_tokens = b;
    Row r;
    r.budget = b;
    r.model = args.open()->model();
    const int plain = r.model->create_session()->send(text, cfg).prompt_tokens;
    r.prompt = r.model->create_session()->send(text, {img}, cfg).prompt_tokens;  // also the warm-up
    r.soft = r.prompt - plain - 2;
    rows.push_back(std::move(r));
  }
  for (int i = 0; i < reps; ++i)
    for (Row& r : rows) {
      const ChatResult res = r.model->create_session()->send(text, {img}, cfg);
      r.tower.push_back(res.performance.vision_ms);
      r.ttft.push_back(res.performance.ttft_ms);
    }
  nlohmann::ordered_json j = nlohmann::ordered_json::array();
  if (!json)
    std::printf("%s, %d threads, %d repetitions\n| budget | soft tokens | prompt tokens | vision tower ms | TTFT ms |\n"
                "|---:|---:|---:|---:|---:|\n",
                path.c_str(), rows.empty() ? 0 : rows[0].model->info().threads, reps);
  for (const Row& r : rows) {
    const Stat t = stat(r.tower), f = stat(r.ttft);
    if (json) {
      j.push_back({{"budget", r.budget}, {"soft_tokens", r.soft}, {"prompt_tokens", r.prompt},
                   {"tower_ms", t.mean}, {"tower_ms_sd", t.sd}, {"ttft_ms", f.mean}, {"ttft_ms_sd", f.sd}});
    } else {
      std::printf("| %d | %d | %d | %.0f +- %.0f | %.0f +- %.0f |\n", r.budget, r.soft, r.prompt, t.mean, t.sd, f.mean,
                  f.sd);
    }
  }
  if (json) std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

struct GridOptions {
  std::vector<int> pp{512}, tg{128};
  std::vector<int> batch{1};  // sequences decoding together in the tg tests (1: plain decode)
  int reps = 5;
  bool json = false;
  double bw_gib = 1.0;  // read-bandwidth probe buffer (0: skip)
};

int grid(const ChatArgs& a, const GridOptions& g) {
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
  // b sequences decoding n tokens each in step, one forward_batch per step (the server's batched
  // decode): aggregate tokens per second. Each starts from <bos> and a different random token,
  // so they route to different experts, as different conversations do.
  std::vector<float> blogits;
  auto run_tgb = [&](int n, int b) {
    blogits.resize(size_t(b) * size_t(V));
    std::vector<model::gemma4::KvCache> caches;
    std::vector<int32_t> toks(static_cast<size_t>(b));
    std::vector<model::gemma4::SequenceStep> steps(static_cast<size_t>(b));
    for (int s = 0; s < b; ++s) {
      caches.push_back(model.make_cache(n + 3));
      const int32_t first[2] = {2, int32_t(std::uniform_int_distribution<int64_t>(4, V - 1)(rng))};
      model.forward(first, caches.back(), &blogits[size_t(s) * size_t(V)], false);  // untimed
    }
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      for (int s = 0; s < b; ++s) {
        const float* l = &blogits[size_t(s) * size_t(V)];
        toks[size_t(s)] = int32_t(std::max_element(l, l + V) - l);
        steps[size_t(s)] = {std::span(&toks[size_t(s)], 1), &caches[size_t(s)], &blogits[size_t(s) * size_t(V)], false};
      }
      model.forward_batch(steps);
    }
    return double(n) * b / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  struct Row { std::string test; Stat s; std::vector<double> v; std::function<double()> f; };
  std::vector<Row> rows;
  // The bandwidth limit, measured with the same threads before and after the tests (best of both).
  double bw = 0;
  auto probe = [&] {
    if (g.bw_gib > 0)
      bw = std::max(bw, engine::measure_read_bandwidth_gbps(model.pool(), size_t(g.bw_gib * double(1 << 30)), 5));
  };
  for (int p : g.pp)
    if (p > 0) rows.push_back({"pp" + std::to_string(p), {}, {}, [&run_pp, p] { return run_pp(p); }});
  for (int n : g.tg)
    for (int b : g.batch) {
      if (n <= 0 || b <= 0) continue;
      if (b == 1) rows.push_back({"tg" + std::to_string(n), {}, {}, [&run_tg, n] { return run_tg(n); }});
      else rows.push_back({"tg" + std::to_string(n) + "x" + std::to_string(b), {}, {}, [&run_tgb, n, b] { return run_tgb(n, b); }});
    }
  probe();
  for (Row& r : rows) r.f();  // warm-up (page cache, first touches)
  for (int i = 0; i < g.reps; ++i)
    for (Row& r : rows) r.v.push_back(r.f());
  for (Row& r : rows) r.s = stat(r.v);
  probe();
  const int threads = model.pool().size();
  const double gb = double(model.checkpoint().total_bytes()) / 1e9, per_tok = double(model.bytes_per_token()) / 1e9;
  // Decode streams bytes_per_token per token: its GB/s and the fraction of the probe's GB/s.
  auto gbs = [&](const Row& r) {  // not for tgNxB: its tokens share the weights
    return r.test.rfind("tg", 0) == 0 && r.test.find('x') == std::string::npos ? r.s.mean * per_tok : 0.0;
  };
  if (g.json) {
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
    // tgNxB against tgN: what B sequences decoding together give over one.
    for (const auto& r : rows) {
      const size_t x = r.test.find('x');
      if (r.test.rfind("tg", 0) != 0 || x == std::string::npos) continue;
      for (const auto& one : rows)
        if (one.test == r.test.substr(0, x))
          std::printf("%s: %.2fx the aggregate of %s (round-robin repetitions)\n", r.test.c_str(), r.s.mean / one.s.mean,
                      one.test.c_str());
    }
    if (bw > 0)
      std::printf("\nread bandwidth (%d threads, %.1f GiB buffer, best pass): %.1f GB/s; decode limit %.2f t/s; %s precision\n",
                  threads, g.bw_gib, bw, bw / per_tok, (a.exact ? "exact" : a.int8 ? "int8" : "fast"));
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
    bool capitals = false, quiet = false;
    GridOptions grid;
    std::string image;
    std::vector<int> budgets{70, 140, 280, 560, 1120};
  };
  auto b = std::make_shared<B>();
  CLI::App* cmd = app.add_subcommand("bench", "Benchmarks: --capitals chat, or a llama-bench-like -p/-n/-r grid");
  a->add_to(cmd);
  cmd->add_flag("--capitals", b->capitals, "The model card's four-turn capitals chat (TTFT gate, best decode tok/s of turns 2-4)");
  cmd->add_option("-p,--n-prompt", b->grid.pp, "Prompt lengths to time (pp tests; comma-separated or repeated)")
      ->delimiter(',');
  cmd->add_option("-n,--n-gen", b->grid.tg, "Generation lengths to time (tg tests; stop tokens ignored)")->delimiter(',');
  cmd->add_option("-b,--batch", b->grid.batch,
                  "Sequences decoding together in the tg tests, one batched forward pass per step (tgNxB: aggregate "
                  "tok/s; default 1)")
      ->delimiter(',')
      ->check(CLI::Range(1, 64));
  cmd->add_option("-r,--repetitions", b->grid.reps, "Repetitions per test (round-robin over the tests)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", b->grid.json, "Machine-readable output");
  cmd->add_option("--bandwidth-gib", b->grid.bw_gib,
                  "Buffer of the read-bandwidth probe run before and after the grid (0: skip)")
      ->check(CLI::Range(0.0, 16.0));
  cmd->add_flag("--quiet", b->quiet, "--capitals: do not print the answers");
  cmd->add_option("--image", b->image, "A one-image prompt at each budget: vision tower time and TTFT (-r repetitions)");
  cmd->add_option("--budgets", b->budgets, "--image: soft-token budgets (default 70,140,280,560,1120)")
      ->delimiter(',')
      ->check(CLI::IsMember({70, 140, 280, 560, 1120}));
  cmd->callback([a, b] {
    const int rc = b->capitals         ? capitals(*a, b->grid.json, b->quiet)
                   : !b->image.empty() ? vision(*a, b->image, b->budgets, b->grid.reps, b->grid.json)
                                       : grid(*a, b->grid);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace mlxq::cli
