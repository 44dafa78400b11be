// GuardedHttpServer (http_conn.h): a socket stream with a per-request deadline, and the
// keep-alive loop that drives httplib::Server::process_request over it.
#include "server/http_conn.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

namespace mlxq::server {

namespace {

using Clock = std::chrono::steady_clock;

thread_local bool t_timed_out = false;
thread_local bool t_close = false;

// A peer that closed its end reads as end-of-file without blocking.
bool peer_open(int sock) {
  char c;
  const ssize_t n = ::recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return !(n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK));
}
thread_local int t_sock = -1;

// Waits for `events` on the socket for at most `ms` (>= 0); true when ready.
bool wait_for(int sock, short events, int64_t ms) {
  pollfd p{sock, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, int(std::clamp<int64_t>(ms, 0, 1 << 30)));
    if (r < 0 && errno == EINTR) continue;
    return r > 0 && (p.revents & (events | POLLHUP | POLLERR)) != 0;
  }
}

void peer(int sock, bool remote, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t n = sizeof(a);
  const int r = remote ? ::getpeername(sock, reinterpret_cast<sockaddr*>(&a), &n)
                       : ::getsockname(sock, reinterpret_cast<sockaddr*>(&a), &n);
  if (r != 0) return;
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &s->sin_addr, buf, sizeof(buf));
    port = ntohs(s->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof(buf));
    port = ntohs(s->sin6_port);
  }
  ip = buf;
}

class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(int sock, int64_t read_ms, int64_t write_ms) : sock_(sock), read_ms_(read_ms), write_ms_(write_ms) {}
  void start_request(Clock::time_point deadline) {
    deadline_ = deadline;
    timed_out_ = t_timed_out = false;
    written_ = 0;
  }
  bool timed_out() const { return timed_out_; }
  size_t written() const { return written_; }

  bool is_readable() const override { return wait_for(sock_, POLLIN, read_wait()); }
  bool is_writable() const override {
    return wait_for(sock_, POLLOUT, write_ms_) && peer_open(sock_);
  }
  ssize_t read(char* ptr, size_t size) override {
    const int64_t wait = read_wait();
    if (!wait_for(sock_, POLLIN, wait)) {
      if (wait < read_ms_) timed_out_ = t_timed_out = true;  // the deadline, not the per-read timeout, ran out
      return -1;
    }
    ssize_t n;
    do n = ::recv(sock_, ptr, size, 0);
    while (n < 0 && errno == EINTR);
    return n;
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!wait_for(sock_, POLLOUT, write_ms_)) return -1;
    ssize_t n;
    do n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n > 0) written_ += size_t(n);
    return n;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { peer(sock_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { peer(sock_, false, ip, port); }
  socket_t socket() const override { return sock_; }

 private:
  // A read waits for the per-read timeout, but never past the request's deadline.
  int64_t read_wait() const {
    if (deadline_ == Clock::time_point::max()) return read_ms_;
    const int64_t left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
    return std::max<int64_t>(0, std::min(read_ms_, left));
  }
  int sock_;
  int64_t read_ms_, write_ms_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  size_t written_ = 0;
};

}  // namespace

bool request_timed_out_on_this_thread() { return t_timed_out; }
bool client_connected_on_this_thread() { return t_sock < 0 || peer_open(t_sock); }
void close_connection_after_this_request() { t_close = true; }

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  DeadlineStream strm(sock, int64_t(read_timeout_sec_) * 1000 + int64_t(read_timeout_usec_) / 1000,
                      int64_t(write_timeout_sec_) * 1000 + int64_t(write_timeout_usec_) / 1000);
  bool ok = false;
  t_sock = sock;
  struct Clear {
    ~Clear() { t_sock = -1; }
  } clear;
  for (size_t left = keep_alive_max_count_; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
    // Idle between requests: wait for the next one's first byte (keep-alive timeout).
    if (!wait_for(sock, POLLIN, int64_t(keep_alive_timeout_sec_) * 1000)) break;
    strm.start_request(Clock::now() + request_timeout_);
    bool closed = false;
    t_close = false;
    ok = process_request(strm, left == 1, closed, nullptr);
    if (t_close) break;
    if (strm.timed_out()) {
      if (on_request_timeout) on_request_timeout();
      if (strm.written() > 0) break;  // the error handler answered 408 already
      const std::string head = "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(timeout_body_.size()) + "\r\nConnection: close\r\n\r\n";
      strm.write(head.data(), head.size());
      strm.write(timeout_body_.data(), timeout_body_.size());
      break;
    }
    if (!ok || closed) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace mlxq::server
