// The HTTP server (server.h): routes, authentication, the request path every generating endpoint
// shares (parse -> render -> slot -> generate, whole or streamed), errors and metrics.
#include "server/server.h"

#include <httplib.h>
#include <malloc.h>

#include <chrono>
#include <condition_variable>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

#include "mlxq/session.h"
#include "server/api_chat.h"
#include "server/api_messages.h"
#include "server/api_responses.h"
#include "server/http_conn.h"
#include "server/slots.h"

namespace mlxq::server {

namespace {

using Clock = std::chrono::steady_clock;

Api api_for(const std::string& path) {
  if (path.rfind("/v1/messages", 0) == 0) return Api::Anthropic;
  if (path.rfind("/v1/responses", 0) == 0) return Api::Responses;
  return Api::Chat;
}

// The endpoints metrics are kept for (anything else counts as "other", so labels stay bounded).
std::string endpoint_label(const std::string& path) {
  static const char* known[] = {"/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens",
                                "/v1/models", "/health", "/v1/health", "/metrics"};
  for (const char* k : known)
    if (path == k) return k;
  return "other";
}

void send_error(httplib::Response& res, Api api, const HttpError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(error_body(api, e).dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

// Request bodies are untrusted: nesting is bounded before the parser builds anything deep.
Json parse_body(const std::string& body) {
  constexpr int kMaxDepth = 64;
  auto limit = [](int depth, nlohmann::detail::parse_event_t, Json&) {
    if (depth > kMaxDepth) throw HttpError(400, "request body: JSON nested deeper than 64 levels");
    return true;
  };
  try {
    Json j = Json::parse(body, limit);
    if (!j.is_object()) throw HttpError(400, "request body: expected a JSON object");
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw HttpError(400, std::string("request body: invalid JSON (") + e.what() + ")");
  }
}

bool thinking_on(const ChatConfig& c) {
  return c.reasoning_effort && (*c.reasoning_effort == "medium" || *c.reasoning_effort == "high");
}

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  std::shared_ptr<Model> model;
  std::unique_ptr<SlotPool> slots;
  ResponseStore store;
  GuardedHttpServer http;
  std::string model_id;
  int64_t vocab_size = 0;
  int64_t started = unix_now();

  // Metrics.
  std::mutex metrics_mu;
  std::map<std::pair<std::string, int>, uint64_t> requests;  // (endpoint, status) -> count
  std::atomic<uint64_t> prompt_tokens{0}, cached_tokens{0}, generated_tokens{0}, cancelled{0}, active{0}, timeouts{0};
  std::atomic<uint64_t> decode_us{0}, prefill_us{0};

  // Housekeeping: every few seconds freed heap pages go back to the OS (malloc_trim). Requests
  // allocate and free on many worker threads, each with its own malloc arena, and glibc returns an
  // arena's free pages only from its top: without this, RSS creeps up under steady load. A member
  // object, so its thread is joined however the server's construction ends.
  struct Housekeeper {
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;
    std::thread thread{[this] {
      std::unique_lock lock(mu);
      while (!cv.wait_for(lock, std::chrono::seconds(5), [this] { return stop; })) malloc_trim(0);
    }};
    ~Housekeeper() {
      {
        std::lock_guard g(mu);
        stop = true;
      }
      cv.notify_all();
      thread.join();
    }
  } housekeeper;

  explicit Impl(const ServerOptions& o) : opt(o), store(o.stored_responses) {
    // Buffers of a megabyte or more (the sampler's vocabulary-sized ones, per request) always come
    // from mmap and go back on free; glibc's default threshold rises after the first such free and
    // then serves them from the arenas, where they fragment.
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    LoadOptions lo;
    lo.threads = opt.threads;
    lo.max_context = opt.ctx_size;
    lo.exact = opt.exact;
    lo.int8 = opt.int8;
    lo.max_soft_tokens = opt.max_soft_tokens;
    lo.batch_sequences = std::max(1, opt.slots);
    model = load_model(opt.model_path, lo);
    vocab_size = model->info().vocab_size;
    model_id = !opt.model_id.empty() ? opt.model_id
                                      : std::filesystem::path(opt.model_path).lexically_normal().filename().string();
    if (model_id.empty()) model_id = std::filesystem::path(opt.model_path).parent_path().filename().string();
    SlotOptions so;
    so.slots = std::max(1, opt.slots);
    so.ctx_size = opt.ctx_size;
    so.queue = std::max(0, opt.queue);
    so.max_wait = std::chrono::seconds(opt.max_wait_s);
    slots = std::make_unique<SlotPool>(model, so);
    routes();
  }

  void log(const std::string& line) {
    if (opt.log) {
      opt.log(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }

  // ---- the shared request path ----

  struct Prepared {
    GenRequest req;
    std::string messages_json, tools_json;
    std::vector<int32_t> prompt;
    std::shared_ptr<SlotPool::Lease> lease;
    ResponseMeta meta;
  };

  // Model check, prompt render, context check, then a slot (or 503).
  Prepared prepare(GenRequest req, const std::string& id_prefix) {
    if (!req.model.empty() && req.model != model_id)
      throw HttpError(404, "The model '" + req.model + "' does not exist (this server serves '" + model_id + "')",
                      "model", "model_not_found");
    for (const auto& [id, bias] : req.config.logit_bias)
      if (id >= vocab_size)
        throw HttpError(400, "logit_bias: token id " + std::to_string(id) + " is outside the vocabulary of " +
                                 std::to_string(vocab_size), "logit_bias");
    Prepared p;
    p.messages_json = req.messages.dump();
    p.tools_json = req.tools.is_null() ? "" : req.tools.dump();
    if (!p.tools_json.empty()) req.config.tools_json = p.tools_json;
    try {
      p.prompt = model->prompt_tokens(p.messages_json, p.tools_json, thinking_on(req.config));
    } catch (const std::exception& e) {
      throw HttpError(400, std::string("messages could not be rendered: ") + e.what(), "messages");
    }
    const int64_t n = int64_t(p.prompt.size());
    if (n >= opt.ctx_size)
      throw HttpError(400,
                      "This model's maximum context length is " + std::to_string(opt.ctx_size) +
                          " tokens; the prompt has " + std::to_string(n) + " tokens",
                      "messages", "context_length_exceeded");
    // What fits after the prompt: a longer max_tokens is clamped (the answer ends with "length").
    const int room = int(opt.ctx_size - n - 1);
    const int want = req.config.max_new_tokens.value_or(opt.limits.default_max_tokens);
    req.config.max_new_tokens = std::max(1, std::min(want, room));
    SlotPool::Refusal why = SlotPool::Refusal::None;
    std::unique_ptr<SlotPool::Lease> lease = slots->acquire(p.prompt, &why);
    if (!lease)
      throw HttpError(503, why == SlotPool::Refusal::QueueFull ? "The server is busy: every slot and queue place is taken"
                                                               : "The server is busy: no slot freed up in time");
    p.lease = std::move(lease);
    p.meta.id = make_id(id_prefix);
    p.meta.created = unix_now();
    p.meta.model = model_id;
    p.meta.prompt_tokens = int(n);
    p.meta.cached_tokens = std::min(p.lease->shared_prefix(), int(n) - 1);
    p.req = std::move(req);
    return p;
  }

  void account(const ChatResult& r) {
    prompt_tokens += uint64_t(r.prompt_tokens);
    cached_tokens += uint64_t(r.cached_tokens);
    generated_tokens += uint64_t(r.num_tokens);
    prefill_us += uint64_t(r.performance.ttft_ms * 1e3);
    if (r.performance.decode_tokens_per_second > 0)
      decode_us += uint64_t(double(r.num_tokens - 1) / r.performance.decode_tokens_per_second * 1e6);
    if (r.finish_reason == FinishReason::Cancelled) ++cancelled;
  }

  // Runs a prepared request to the end and returns its result (non-streamed responses).
  ChatResult generate(Prepared& p) {
    struct Active {
      std::atomic<uint64_t>& a;
      explicit Active(std::atomic<uint64_t>& x) : a(x) { ++a; }
      ~Active() { --a; }
    } active_guard(active);
    // Nothing is written until the end, so every 8th token asks whether the client is still
    // there; a client that left stops the generation (its slot is free at once).
    Session& s = p.lease->session();
    ChatConfig config = p.req.config;
    config.logits_processor = [&s](float*, int64_t, const std::vector<int32_t>& generated) {
      if (generated.size() % 8 == 7 && !client_connected_on_this_thread()) s.cancel();
    };
    ChatResult r = s.send_messages(p.messages_json, config);
    account(r);
    p.lease.reset();  // the slot is free before the response is written
    return r;
  }

  // A streamed response: the encoder's frames go out as the model produces them. A write that
  // fails means the client is gone: the turn is cancelled at the next token and the slot freed.
  // Encoder: start() -> string, delta(StreamEvent) -> string, finish(ChatResult) -> string.
  template <class Encoder, class OnFinish>
  void stream(httplib::Response& res, Prepared p, std::shared_ptr<Encoder> enc, OnFinish on_finish) {
    auto st = std::make_shared<Prepared>(std::move(p));
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // nginx: pass events through as they come
    res.set_chunked_content_provider("text/event-stream", [this, st, enc, on_finish](size_t, httplib::DataSink& sink) {
      struct Active {
        std::atomic<uint64_t>& a;
        explicit Active(std::atomic<uint64_t>& x) : a(x) { ++a; }
        ~Active() { --a; }
      } active_guard(active);
      Session& s = st->lease->session();
      bool open = true;
      auto put = [&](const std::string& frames) {
        if (open && !frames.empty() && !sink.write(frames.data(), frames.size())) open = false;
        return open;
      };
      put(enc->start());
      // Tokens that add no text (a long silent stretch, ignore_eos past the end) write nothing, so
      // every 8th token also asks whether the client is still there.
      ChatConfig config = st->req.config;
      config.logits_processor = [&](float*, int64_t, const std::vector<int32_t>& generated) {
        if (open && generated.size() % 8 == 7 && !sink.is_writable()) {
          open = false;
          s.cancel();
        }
      };
      ChatResult r;
      try {
        r = s.send_messages_stream(st->messages_json, config, [&](const StreamEvent& e) {
          if (e.done || !open) return;
          if (!put(enc->delta(e))) s.cancel();
        });
      } catch (const std::exception& e) {
        st->lease.reset();
        log(std::string("stream error: ") + e.what());
        put("event: error\ndata: " + error_body(api_for_encoder(*enc), HttpError(500, e.what())).dump() + "\n\n");
        return false;
      }
      account(r);
      st->lease.reset();
      if (!open || r.finish_reason == FinishReason::Cancelled) return false;  // the client left
      put(on_finish(*enc, r));
      sink.done();
      return true;
    });
  }

  static Api api_for_encoder(const ChatStream&) { return Api::Chat; }
  static Api api_for_encoder(const MessagesStream&) { return Api::Anthropic; }
  static Api api_for_encoder(const ResponsesStream&) { return Api::Responses; }

  // ---- endpoints ----

  void chat_completions(const httplib::Request& req, httplib::Response& res) {
    GenRequest g = parse_chat_request(parse_body(req.body), opt.limits);
    Prepared p = prepare(std::move(g), "chatcmpl-");
    if (!p.req.stream) {
      const ChatResult r = generate(p);
      res.set_content(chat_completion_json(r, p.meta).dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
      return;
    }
    auto enc = std::make_shared<ChatStream>(p.meta, p.req.include_usage);
    stream(res, std::move(p), enc, [](ChatStream& e, const ChatResult& r) { return e.finish(r); });
  }

  void responses(const httplib::Request& req, httplib::Response& res) {
    GenRequest g = parse_responses_request(parse_body(req.body), opt.limits, store);
    Prepared p = prepare(std::move(g), "resp_");
    if (!p.req.stream) {
      const ChatResult r = generate(p);
      const Json out = response_json(r, p.meta, p.req);
      if (p.req.store) store.put(p.meta.id, conversation_after(p.req, r, out), p.req.tools);
      res.set_content(out.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
      return;
    }
    auto enc = std::make_shared<ResponsesStream>(p.meta, p.req);
    const GenRequest req_copy = p.req;
    const std::string id = p.meta.id;
    stream(res, std::move(p), enc, [this, req_copy, id](ResponsesStream& e, const ChatResult& r) {
      Json out;
      std::string frames = e.finish(r, &out);
      if (req_copy.store) store.put(id, conversation_after(req_copy, r, out), req_copy.tools);
      return frames;
    });
  }

  void messages(const httplib::Request& req, httplib::Response& res) {
    GenRequest g = parse_messages_request(parse_body(req.body), opt.limits);
    Prepared p = prepare(std::move(g), "msg_");
    if (!p.req.stream) {
      const ChatResult r = generate(p);
      res.set_content(message_json(r, p.meta, p.req.config).dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
      return;
    }
    auto enc = std::make_shared<MessagesStream>(p.meta, p.req.config);
    stream(res, std::move(p), enc, [](MessagesStream& e, const ChatResult& r) { return e.finish(r); });
  }

  void count_tokens(const httplib::Request& req, httplib::Response& res) {
    const GenRequest g = parse_count_tokens_request(parse_body(req.body), opt.limits);
    if (!g.model.empty() && g.model != model_id)
      throw HttpError(404, "The model '" + g.model + "' does not exist (this server serves '" + model_id + "')",
                      "model", "model_not_found");
    std::vector<int32_t> tokens;
    try {
      tokens = model->prompt_tokens(g.messages.dump(), g.tools.is_null() ? "" : g.tools.dump(), thinking_on(g.config));
    } catch (const std::exception& e) {
      throw HttpError(400, std::string("messages could not be rendered: ") + e.what(), "messages");
    }
    res.set_content(Json{{"input_tokens", tokens.size()}}.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
  }

  void models(httplib::Response& res) {
    Json m = {{"id", model_id}, {"object", "model"}, {"created", started}, {"owned_by", "mlxq"},
              {"type", "model"}, {"display_name", model_id}, {"created_at", started}};
    m["meta"] = {{"n_ctx", opt.ctx_size}, {"n_vocab", model->info().vocab_size}, {"slots", opt.slots}};
    res.set_content(Json{{"object", "list"}, {"data", Json::array({m})}}.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
  }

  void health(httplib::Response& res) {
    const SlotPool::Stats s = slots->stats();
    res.set_content(Json{{"status", "ok"}, {"slots_idle", s.slots - s.busy}, {"slots_processing", s.busy},
                         {"queued", s.queued}}
                        .dump(),
                    "application/json");
  }

  void metrics(httplib::Response& res) {
    std::ostringstream o;
    auto metric = [&](const char* name, const char* type, const char* help, double v) {
      o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << v << '\n';
    };
    {
      std::lock_guard g(metrics_mu);
      o << "# HELP mlxq_requests_total HTTP requests answered, by endpoint and status.\n"
           "# TYPE mlxq_requests_total counter\n";
      for (const auto& [k, n] : requests)
        o << "mlxq_requests_total{endpoint=\"" << k.first << "\",status=\"" << k.second << "\"} " << n << '\n';
    }
    const SlotPool::Stats s = slots->stats();
    const ForwardStats f = model->forward_stats();
    const double dec_s = double(decode_us.load()) / 1e6, pre_s = double(prefill_us.load()) / 1e6;
    metric("mlxq_prompt_tokens_total", "counter", "Prompt tokens of finished generations.", double(prompt_tokens));
    metric("mlxq_prompt_cached_tokens_total", "counter", "Prompt tokens reused from a slot's KV cache.",
           double(cached_tokens));
    metric("mlxq_generated_tokens_total", "counter", "Tokens generated.", double(generated_tokens));
    metric("mlxq_prefill_seconds_total", "counter", "Time to first token, summed over generations.", pre_s);
    metric("mlxq_decode_seconds_total", "counter", "Decode time after the first token, summed over generations.", dec_s);
    metric("mlxq_decode_tokens_per_second", "gauge", "Per-stream decode rate over all generations so far.",
           dec_s > 0 ? double(generated_tokens) / dec_s : 0.0);
    metric("mlxq_requests_active", "gauge", "Generations running now.", double(active));
    metric("mlxq_requests_cancelled_total", "counter", "Streams whose client went away mid-answer.", double(cancelled));
    metric("mlxq_requests_rejected_total", "counter", "Requests answered 503 (queue full or waited too long).",
           double(s.rejected));
    metric("mlxq_requests_timed_out_total", "counter", "Requests that did not arrive in time (408, slow clients).",
           double(timeouts));
    metric("mlxq_queue_depth", "gauge", "Requests waiting for a slot.", double(s.queued));
    metric("mlxq_slots_total", "gauge", "Slots (conversations in flight at once).", double(s.slots));
    metric("mlxq_slots_busy", "gauge", "Slots in use.", double(s.busy));
    metric("mlxq_forward_batches_total", "counter", "Forward passes run.", double(f.batches));
    metric("mlxq_forward_rows_total", "counter", "Tokens over all forward passes.", double(f.batched_rows));
    metric("mlxq_forward_sequences_total", "counter", "Sequences over all forward passes (batching: / batches).",
           double(f.batched_sequences));
    metric("mlxq_forward_seconds_total", "counter", "Wall time inside forward passes (the rest of a generation's time is the server's).",
           f.forward_seconds);
    res.set_content(o.str(), "text/plain; version=0.0.4");
  }

  // Every handler's errors become the API's error object.
  template <class F>
  httplib::Server::Handler guarded(F f) {
    return [this, f](const httplib::Request& req, httplib::Response& res) {
      const Api api = api_for(req.path);
      try {
        f(req, res);
      } catch (const HttpError& e) {
        send_error(res, api, e);
      } catch (const std::exception& e) {
        log(std::string("internal error on ") + req.path + ": " + e.what());
        send_error(res, api, HttpError(500, std::string("internal error: ") + e.what()));
      }
    };
  }

  void routes() {
    http.Post("/v1/chat/completions", guarded([this](auto& q, auto& r) { chat_completions(q, r); }));
    http.Post("/v1/responses", guarded([this](auto& q, auto& r) { responses(q, r); }));
    http.Post("/v1/messages", guarded([this](auto& q, auto& r) { messages(q, r); }));
    http.Post("/v1/messages/count_tokens", guarded([this](auto& q, auto& r) { count_tokens(q, r); }));
    http.Get("/v1/models", guarded([this](auto&, auto& r) { models(r); }));
    http.Get("/health", guarded([this](auto&, auto& r) { health(r); }));
    http.Get("/v1/health", guarded([this](auto&, auto& r) { health(r); }));
    http.Get("/metrics", guarded([this](auto&, auto& r) { metrics(r); }));

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opt.api_key.empty() || req.path == "/health" || req.path == "/v1/health")
        return httplib::Server::HandlerResponse::Unhandled;
      const std::string bearer = req.get_header_value("Authorization");
      const std::string x_key = req.get_header_value("x-api-key");
      if (bearer == "Bearer " + opt.api_key || x_key == opt.api_key) return httplib::Server::HandlerResponse::Unhandled;
      close_connection_after_this_request();  // the body was not read
      res.set_header("Connection", "close");
      send_error(res, api_for(req.path),
                 HttpError(401, bearer.empty() && x_key.empty() ? "Missing API key (Authorization: Bearer KEY or x-api-key)"
                                                                : "Invalid API key",
                           "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    // httplib's own refusals (unknown route, oversized body, malformed request) get a JSON body too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 400 || res.status == 408 || res.status == 413 || res.status == 414) {
        close_connection_after_this_request();  // what is left of the request was not read
        res.set_header("Connection", "close");
      }
      if (request_timed_out_on_this_thread()) res.status = 408;
      std::string msg = "HTTP " + std::to_string(res.status);
      if (res.status == 408) msg = "Request timeout: the request did not arrive in time";
      if (res.status == 404) msg = "Unknown endpoint: " + req.method + " " + req.path;
      if (res.status == 405) msg = "Method not allowed: " + req.method + " " + req.path;
      if (res.status == 413) msg = "Request body too large";
      if (res.status == 400) msg = "Malformed HTTP request";
      send_error(res, api_for(req.path), HttpError(res.status, msg));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log("internal error on " + req.path + ": " + what);
      send_error(res, api_for(req.path), HttpError(500, "internal error: " + what));
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      {
        std::lock_guard g(metrics_mu);
        ++requests[{endpoint_label(req.path), res.status}];
      }
      log(req.method + " " + req.path + " " + std::to_string(res.status));
    });

    http.set_payload_max_length(opt.max_body_bytes);
    http.set_read_timeout(opt.read_timeout_s, 0);
    http.set_request_timeout(std::chrono::seconds(opt.read_timeout_s));
    http.set_timeout_body(
        error_body(Api::Chat, HttpError(408, "Request timeout: the request did not arrive within " +
                                                 std::to_string(opt.read_timeout_s) + " s"))
            .dump());
    http.on_request_timeout = [this] { ++timeouts; };
    http.set_write_timeout(opt.write_timeout_s, 0);
    http.set_keep_alive_timeout(5);
    http.set_keep_alive_max_count(100);
    const int threads = opt.http_threads > 0 ? opt.http_threads : std::max(1, opt.slots) + std::max(0, opt.queue) + 8;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  }
};

Server::Server(const ServerOptions& options) : impl_(std::make_unique<Impl>(options)) {}
Server::~Server() = default;

bool Server::run() {
  Impl& s = *impl_;
  const int port = s.opt.port == 0 ? s.http.bind_to_any_port(s.opt.host) : (s.http.bind_to_port(s.opt.host, s.opt.port) ? s.opt.port : -1);
  if (port < 0) return false;
  s.log("mlxq serve: " + s.model_id + " on http://" + s.opt.host + ":" + std::to_string(port) + " (" +
        std::to_string(s.opt.slots) + " slots of " + std::to_string(s.opt.ctx_size) + " tokens)");
  if (s.opt.on_listening) s.opt.on_listening(port);
  return s.http.listen_after_bind();
}

void Server::stop() { impl_->http.stop(); }

}  // namespace mlxq::server
