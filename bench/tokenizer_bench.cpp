// Tokenizer benchmarks (Google Benchmark): loading the 262k-entry tokenizer.json, and encoding
// throughput in MB/s on the golden corpus (prose, code, 45 languages, long documents).
// Run: build/bench/tokenizer_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "text/tokenizer.h"

namespace {

const std::string& corpus() {
  static const std::string text = [] {
    std::ifstream in(MLXQ_TEST_DATA "/tokenizer/corpus.jsonl");
    std::string all;
    for (std::string line; std::getline(in, line);) all += nlohmann::json::parse(line)["text"].get<std::string>() + "\n";
    return all;
  }();
  return text;
}

void BM_Load(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(mlxq::text::Tokenizer::from_file(MLXQ_TOKENIZER));
}
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond);

void BM_Encode(benchmark::State& state) {
  static const auto tok = mlxq::text::Tokenizer::from_file(MLXQ_TOKENIZER);
  const std::string& text = corpus();
  std::vector<int32_t> ids;
  for (auto _ : state) {
    ids.clear();
    tok.encode(text, state.range(0) != 0, ids);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["tokens"] = double(ids.size());
}
BENCHMARK(BM_Encode)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& state) {
  static const auto tok = mlxq::text::Tokenizer::from_file(MLXQ_TOKENIZER);
  const auto ids = tok.encode(corpus());
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(corpus().size()));
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
