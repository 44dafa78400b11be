// `mlxq serve`: one process, one mapped model, many conversations over HTTP. OpenAI Chat
// Completions and Responses, Anthropic Messages (api_*.h), the model list, health and Prometheus
// metrics, on cpp-httplib. Requests take a slot (slots.h); the slots' forward passes are batched
// by the model's scheduler. Every error is the API's own error object with the right status.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "server/api_common.h"

namespace mlxq::server {

struct ServerOptions {
  std::string model_path;          // a checkpoint directory ("" is not allowed here: the CLI resolves the default)
  std::string model_id;            // the id clients see and may name ("" -> the folder's name)
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (see on_listening)
  int slots = 4;                   // --parallel
  int64_t ctx_size = 8192;         // per slot
  int threads = 0;                 // the model's thread pool (0: all cores)
  int queue = 64;                  // requests waiting for a slot before 503
  int max_wait_s = 300;            // longest wait for a slot before 503
  std::string api_key;             // "" : no authentication
  size_t max_body_bytes = 8u << 20;
  int read_timeout_s = 10;         // per read: a stalled client is dropped after this
  int write_timeout_s = 30;
  int http_threads = 0;            // 0: slots + queue + 8
  size_t stored_responses = 1024;  // previous_response_id memory (LRU)
  Limits limits;
  bool exact = false;              // f32 activations (LoadOptions::exact)
  bool int8 = false;               // one int8 activation part (LoadOptions::int8)
  int64_t max_soft_tokens = 0;     // soft tokens per image (LoadOptions::max_soft_tokens; 0: the checkpoint's)
  std::function<void(const std::string&)> log;      // one line per request and event ("" -> stderr)
  std::function<void(int port)> on_listening;       // called once the socket is bound
};

class Server {
 public:
  explicit Server(const ServerOptions& options);  // loads the model; throws mlxq::Error
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  // Binds and serves until stop(); false if the address cannot be bound.
  bool run();
  void stop();  // from any thread (a signal handler's thread included: it only flags and shuts the socket)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlxq::server
