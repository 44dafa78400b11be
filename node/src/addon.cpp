// The native half of the mlxq Node binding (index.js is the other): Model and Session objects
// over the C++ API (include/mlxq). Loading runs on a worker thread (a Promise); a turn runs on
// its own thread and hands every stream event to JS through a thread-safe function, so the event
// loop stays free. index.js validates options and turns the events into the card's async
// iterator; this file only converts values and moves them between threads.
#include <napi.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "mlxq/default_model.h"
#include "mlxq/session.h"

namespace {

Napi::FunctionReference* g_model_ctor = nullptr;
Napi::FunctionReference* g_session_ctor = nullptr;

// ---- values -------------------------------------------------------------------------------------

// The config object index.js has already checked (camelCase keys, right types).
mlxq::ChatConfig to_config(const Napi::Object& o) {
  mlxq::ChatConfig c;
  auto num = [&](const char* k) -> std::optional<double> {
    if (!o.Has(k) || o.Get(k).IsUndefined() || o.Get(k).IsNull()) return std::nullopt;
    return o.Get(k).As<Napi::Number>().DoubleValue();
  };
  if (auto v = num("maxNewTokens")) c.max_new_tokens = int(*v);
  if (auto v = num("temperature")) c.temperature = float(*v);
  if (auto v = num("topP")) c.top_p = float(*v);
  if (auto v = num("topK")) c.top_k = int(*v);
  if (auto v = num("minP")) c.min_p = float(*v);
  if (auto v = num("repetitionPenalty")) c.repetition_penalty = float(*v);
  if (auto v = num("presencePenalty")) c.presence_penalty = float(*v);
  if (auto v = num("frequencyPenalty")) c.frequency_penalty = float(*v);
  if (auto v = num("seed")) c.seed = uint64_t(*v);
  if (auto v = num("thinkingTokenBudget")) c.thinking_token_budget = int(*v);
  if (o.Has("reasoningEffort") && o.Get("reasoningEffort").IsString())
    c.reasoning_effort = o.Get("reasoningEffort").As<Napi::String>().Utf8Value();
  if (o.Has("stop") && o.Get("stop").IsArray()) {
    const Napi::Array a = o.Get("stop").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) c.stop.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  }
  if (o.Has("toolsJson") && o.Get("toolsJson").IsString())
    c.tools_json = o.Get("toolsJson").As<Napi::String>().Utf8Value();
  if (o.Has("ignoreEos") && o.Get("ignoreEos").IsBoolean()) c.ignore_eos = o.Get("ignoreEos").As<Napi::Boolean>();
  return c;
}

Napi::Value json_to_js(Napi::Env env, const nlohmann::json& j) {
  // Small values (tool-call arguments): through JSON.parse, which keeps numbers and nesting as JS has them.
  const Napi::Object json = env.Global().Get("JSON").As<Napi::Object>();
  return json.Get("parse").As<Napi::Function>().Call(json, {Napi::String::New(env, j.dump())});
}

Napi::Object result_to_js(Napi::Env env, const mlxq::ChatResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("done", true);
  o.Set("text", r.text);
  o.Set("thinking", r.thinking ? Napi::Value(Napi::String::New(env, *r.thinking)) : env.Null());
  o.Set("thinkingEnabled", r.thinking_enabled);
  Napi::Array calls = Napi::Array::New(env, r.tool_calls.size());
  for (size_t i = 0; i < r.tool_calls.size(); ++i) {
    const mlxq::ToolCall& c = r.tool_calls[i];
    Napi::Object t = Napi::Object::New(env);
    t.Set("id", c.id);
    t.Set("name", c.name);
    const auto args = nlohmann::json::parse(c.arguments_json, nullptr, false);
    t.Set("arguments", args.is_discarded() ? Napi::Value(Napi::String::New(env, c.arguments_json)) : json_to_js(env, args));
    t.Set("status", c.status);
    calls.Set(uint32_t(i), t);
  }
  o.Set("toolCalls", calls);
  o.Set("finishReason", mlxq::to_string(r.finish_reason));
  o.Set("numTokens", r.num_tokens);
  o.Set("promptTokens", r.prompt_tokens);
  o.Set("cachedTokens", r.cached_tokens);
  o.Set("prefillTokens", r.prefill_tokens);
  o.Set("reasoningTokens", r.reasoning_tokens);
  o.Set("rawText", r.raw_text);
  Napi::Object p = Napi::Object::New(env);
  p.Set("ttftMs", r.performance.ttft_ms);
  p.Set("prefillTokensPerSecond", r.performance.prefill_tokens_per_second);
  p.Set("decodeTokensPerSecond", r.performance.decode_tokens_per_second);
  p.Set("visionMs", r.performance.vision_ms);
  o.Set("performance", p);
  return o;
}

mlxq::LoadOptions to_load_options(const Napi::Object& o) {
  mlxq::LoadOptions lo;
  if (o.Has("threads") && o.Get("threads").IsNumber()) lo.threads = o.Get("threads").As<Napi::Number>().Int32Value();
  if (o.Has("maxContext") && o.Get("maxContext").IsNumber())
    lo.max_context = o.Get("maxContext").As<Napi::Number>().Int64Value();
  if (o.Has("exact") && o.Get("exact").IsBoolean()) lo.exact = o.Get("exact").As<Napi::Boolean>();
  if (o.Has("maxSoftTokens") && o.Get("maxSoftTokens").IsNumber())
    lo.max_soft_tokens = o.Get("maxSoftTokens").As<Napi::Number>().Int64Value();
  return lo;
}

// ---- Model --------------------------------------------------------------------------------------

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel", {InstanceMethod("createSession", &ModelWrap::CreateSession),
                                            InstanceMethod("info", &ModelWrap::Info)});
  }
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    model_ = *info[0].As<Napi::External<std::shared_ptr<mlxq::Model>>>().Data();
  }
  std::shared_ptr<mlxq::Model> model_;

 private:
  Napi::Value CreateSession(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info) {
    const mlxq::ModelInfo i = model_->info();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("path", i.path);
    o.Set("modelType", i.model_type);
    o.Set("vocabSize", double(i.vocab_size));
    o.Set("numLayers", double(i.num_layers));
    o.Set("precision", i.precision);
    o.Set("threads", i.threads);
    o.Set("vision", i.vision);
    o.Set("maxSoftTokens", double(i.max_soft_tokens));
    o.Set("liveSessions", model_->live_sessions());
    return o;
  }
};

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, std::string path, mlxq::LoadOptions lo)
      : Napi::AsyncWorker(env), path_(std::move(path)), lo_(lo), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      if (path_.empty()) path_ = mlxq::default_model_path();
      model_ = mlxq::load_model(path_, lo_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto holder = std::make_unique<std::shared_ptr<mlxq::Model>>(model_);
    const Napi::External<std::shared_ptr<mlxq::Model>> ext =
        Napi::External<std::shared_ptr<mlxq::Model>>::New(Env(), holder.get());
    deferred_.Resolve(g_model_ctor->New({ext}));  // the constructor copies the shared_ptr
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::string path_;
  mlxq::LoadOptions lo_;
  std::shared_ptr<mlxq::Model> model_;
  Napi::Promise::Deferred deferred_;
};

// loadModel(path | "", options) -> Promise<NativeModel>
Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  const std::string path = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  const mlxq::LoadOptions lo = info[1].IsObject() ? to_load_options(info[1].As<Napi::Object>()) : mlxq::LoadOptions{};
  auto* w = new LoadWorker(info.Env(), path, lo);
  const Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// ---- Session ------------------------------------------------------------------------------------

// What a turn's thread hands to JS: a delta, the final result, or an error.
struct Event {
  enum Kind { Delta, Final, Failed } kind = Delta;
  std::string text;
  bool reasoning = false;
  mlxq::ChatResult result;
};

class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeSession",
                       {InstanceMethod("start", &SessionWrap::Start), InstanceMethod("cancel", &SessionWrap::Cancel),
                        InstanceMethod("reset", &SessionWrap::Reset), InstanceMethod("turns", &SessionWrap::Turns),
                        InstanceMethod("historyLength", &SessionWrap::HistoryLength),
                        InstanceMethod("hasImages", &SessionWrap::HasImages),
                        InstanceMethod("history", &SessionWrap::History),
                        InstanceMethod("pendingToolCalls", &SessionWrap::Pending)});
  }
  explicit SessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SessionWrap>(info) {
    ModelWrap* m = Napi::ObjectWrap<ModelWrap>::Unwrap(info[0].As<Napi::Object>());
    mlxq::SessionOptions so;
    if (info[1].IsObject()) {
      const Napi::Object o = info[1].As<Napi::Object>();
      if (o.Has("system") && o.Get("system").IsString()) so.system = o.Get("system").As<Napi::String>().Utf8Value();
      if (o.Has("maxContext") && o.Get("maxContext").IsNumber())
        so.max_context = o.Get("maxContext").As<Napi::Number>().Int64Value();
      if (o.Has("defaultConfig") && o.Get("defaultConfig").IsObject())
        so.default_config = to_config(o.Get("defaultConfig").As<Napi::Object>());
    }
    session_ = m->model_->create_session(so);
  }
  ~SessionWrap() override {
    if (worker_.joinable()) {  // the object is collected while a turn runs: stop it first
      session_->cancel();
      worker_.join();
    }
  }

 private:
  // start(kind: "user" | "tool", text | callId, toolContent, config, onEvent, images?): runs the
  // turn on a thread; onEvent(event) receives {text, done: false, isReasoning}, then the final
  // result object, or {error: message}. images: Buffers / Uint8Arrays (copied now) or file paths
  // (read now: an unreadable file throws here, naming it).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (running_) throw Napi::Error::New(env, "session: another send is in flight on this session");
    if (worker_.joinable()) worker_.join();
    const bool tool = info[0].As<Napi::String>().Utf8Value() == "tool";
    const std::string a = info[1].As<Napi::String>().Utf8Value();
    const std::string b = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    const mlxq::ChatConfig cfg = to_config(info[3].As<Napi::Object>());
    std::vector<mlxq::ImageInput> images;
    if (info.Length() > 5 && info[5].IsArray()) {
      const Napi::Array arr = info[5].As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        const Napi::Value v = arr.Get(i);
        if (v.IsString()) {
          try {
            images.push_back(mlxq::ImageInput::from_file(v.As<Napi::String>().Utf8Value()));
          } catch (const std::exception& e) {
            throw Napi::Error::New(env, e.what());
          }
        } else if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
          const Napi::Uint8Array b = v.As<Napi::Uint8Array>();
          images.push_back({std::vector<uint8_t>(b.Data(), b.Data() + b.ByteLength()), "images[" + std::to_string(i) + "]"});
        } else {
          throw Napi::TypeError::New(env, "images[" + std::to_string(i) + "] must be a Buffer, a Uint8Array or a file path");
        }
      }
    }
    auto tsfn = Napi::ThreadSafeFunction::New(env, info[4].As<Napi::Function>(), "mlxq-turn", 0, 1);
    running_ = true;
    Ref();  // the JS object lives while its turn runs
    worker_ = std::thread([this, tool, a, b, cfg, tsfn, images = std::move(images)]() mutable {
      auto send = [&](Event* e) {
        tsfn.BlockingCall(e, [](Napi::Env env, Napi::Function fn, Event* ev) {
          std::unique_ptr<Event> own(ev);
          Napi::Object o;
          if (ev->kind == Event::Delta) {
            o = Napi::Object::New(env);
            o.Set("text", ev->text);
            o.Set("done", false);
            o.Set("isReasoning", ev->reasoning);
          } else if (ev->kind == Event::Final) {
            o = result_to_js(env, ev->result);
          } else {
            o = Napi::Object::New(env);
            o.Set("error", ev->text);
          }
          fn.Call({o});
        });
      };
      try {
        auto on_event = [&](const mlxq::StreamEvent& e) {
          if (e.done) return;  // the result is sent below, after send_stream returns
          send(new Event{Event::Delta, e.text, e.is_reasoning, {}});
        };
        mlxq::ChatResult r = tool ? session_->send_tool_result_stream(a, b, cfg, on_event)
                                  : session_->send_stream(a, images, cfg, on_event);
        auto* fin = new Event{Event::Final, "", false, std::move(r)};
        running_ = false;
        send(fin);
      } catch (const std::exception& e) {
        running_ = false;
        send(new Event{Event::Failed, e.what(), false, {}});
      }
      tsfn.BlockingCall([this](Napi::Env, Napi::Function) { Unref(); });
      tsfn.Release();
    });
    return env.Undefined();
  }
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    session_->cancel();
    return info.Env().Undefined();
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    if (running_) throw Napi::Error::New(info.Env(), "session: reset while a send is in flight");
    if (worker_.joinable()) worker_.join();
    try {
      session_->reset();
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }
  Napi::Value Turns(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), session_->turns()); }
  Napi::Value HasImages(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), session_->has_images()); }
  Napi::Value HistoryLength(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(session_->history().size()));
  }
  // The token ids in the KV cache (a copy); read between turns.
  Napi::Value History(const Napi::CallbackInfo& info) {
    if (running_) throw Napi::Error::New(info.Env(), "session: history is read between turns, not during a send");
    const std::vector<int32_t>& h = session_->history();
    Napi::Int32Array a = Napi::Int32Array::New(info.Env(), h.size());
    std::copy(h.begin(), h.end(), a.Data());
    return a;
  }
  Napi::Value Pending(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), session_->pending_tool_calls());
  }

  std::unique_ptr<mlxq::Session> session_;
  std::thread worker_;
  std::atomic<bool> running_{false};
};

Napi::Value ModelWrap::CreateSession(const Napi::CallbackInfo& info) {
  return g_session_ctor->New({Value(), info[0].IsObject() ? info[0] : info.Env().Undefined()});
}

Napi::Value DefaultModelDescription(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), mlxq::default_model_description());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  g_model_ctor = new Napi::FunctionReference(Napi::Persistent(ModelWrap::Init(env)));
  g_session_ctor = new Napi::FunctionReference(Napi::Persistent(SessionWrap::Init(env)));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("defaultModelDescription", Napi::Function::New(env, DefaultModelDescription));
  return exports;
}

}  // namespace

NODE_API_MODULE(mlxq, Init)
