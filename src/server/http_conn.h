// The server's connection loop, in place of cpp-httplib's own: the same keep-alive loop around
// httplib's request processing, over a socket stream that gives each request a total deadline
// for arriving (headers and body), not only a per-read timeout. A slowloris client that trickles
// a byte every few seconds would otherwise hold a worker thread for ever; here it gets
// 408 Request Timeout when the deadline passes and the connection is closed.
#pragma once
#include <httplib.h>

#include <chrono>
#include <functional>
#include <string>

namespace mlxq::server {

// True inside httplib's handlers (the error handler included) while the request being processed on
// this thread ran out of time arriving: its 400 "malformed request" is really a 408.
bool request_timed_out_on_this_thread();

// Marks the connection of the request being processed on this thread to be closed once its
// response is written: for refusals made before httplib read the body (401, 413, malformed),
// whose unread bytes would otherwise be parsed as the next request on a kept-alive connection.
void close_connection_after_this_request();

// Whether the client of the request being handled on this thread is still connected (its end
// not closed). For handlers that work long before they write anything.
bool client_connected_on_this_thread();

class GuardedHttpServer : public httplib::Server {
 public:
  // `request_timeout`: how long a request may take to arrive, from its first byte being awaited.
  // `timeout_body`: the 408 response body (the API's error object).
  void set_request_timeout(std::chrono::milliseconds t) { request_timeout_ = t; }
  void set_timeout_body(std::string json) { timeout_body_ = std::move(json); }
  std::function<void()> on_request_timeout;  // counts them (metrics)

 private:
  bool process_and_close_socket(socket_t sock) override;
  std::chrono::milliseconds request_timeout_{10000};
  std::string timeout_body_ = "{}";
};

}  // namespace mlxq::server
