// `mlxq chat` as a user meets it: driven through a pseudo-terminal, on the embedded default model
// (the trained tiny-chat, converted on first use). Three turns, one stopped with Ctrl-C, /stats,
// /quit, and /image; the test checks what the screen shows. --ignore-eos keeps every answer going to the token
// limit, so Ctrl-C always lands inside an answer.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "test_util.h"

namespace mlxq {
namespace {

class Pty {
 public:
  explicit Pty(const std::string& cache_dir) {
    pid_ = forkpty(&fd_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      setenv("XDG_CACHE_HOME", cache_dir.c_str(), 1);
      execl(MLXQ_BIN, "mlxq", "chat", "--temp", "0", "--max-tokens", "300", "--ignore-eos", "-t", "2",
            static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Pty() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  bool started() const { return pid_ > 0; }
  void send(const std::string& s) { ASSERT_EQ(write(fd_, s.data(), s.size()), ssize_t(s.size())); }
  // Reads until the screen, from `from` on, contains `what`; false on timeout or exit.
  bool expect(const std::string& what, size_t from, double seconds = 120) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (screen.find(what, from) == std::string::npos) {
      if (std::chrono::steady_clock::now() > end) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) > 0) {
        char buf[4096];
        const ssize_t n = read(fd_, buf, sizeof buf);
        if (n <= 0) return false;
        screen.append(buf, size_t(n));
      }
    }
    return true;
  }
  int wait_exit(double seconds = 30) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    int st = 0;
    while (std::chrono::steady_clock::now() < end) {
      char buf[4096];
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) > 0 && read(fd_, buf, sizeof buf) > 0) continue;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
    }
    return -2;
  }
  std::string screen;

 private:
  int fd_ = -1;
  pid_t pid_ = -1;
};

TEST(ChatRepl, TwoTurnsCtrlCStatsQuit) {
  Pty t(MLXQ_TEST_CACHE);
  ASSERT_TRUE(t.started());
  ASSERT_TRUE(t.expect("tiny-chat", 0)) << t.screen;  // the one-line announcement
  ASSERT_TRUE(t.expect("> ", 0)) << t.screen;
  size_t mark = t.screen.size();
  t.send("What is the capital of France?\r");
  ASSERT_TRUE(t.expect("Paris", mark)) << t.screen;
  ASSERT_TRUE(t.expect("[length limit]", mark)) << t.screen;  // --ignore-eos
  ASSERT_TRUE(t.expect("> ", mark)) << t.screen;

  mark = t.screen.size();
  t.send("Tell me a long story.\r");
  ASSERT_TRUE(t.expect("long story.\r\n", mark)) << t.screen;  // the echo of the line
  const size_t echo = t.screen.size();
  ASSERT_TRUE(t.expect(" ", echo + 1, 30)) << t.screen;        // the answer is streaming
  t.send("\x03");                                               // Ctrl-C
  ASSERT_TRUE(t.expect("[stopped]", mark)) << t.screen;
  ASSERT_TRUE(t.expect("> ", t.screen.find("[stopped]", mark))) << t.screen;

  mark = t.screen.size();
  t.send("/stats\r");
  ASSERT_TRUE(t.expect("turns 1,", mark)) << t.screen;  // the stopped turn is not committed
  ASSERT_TRUE(t.expect("decode", mark)) << t.screen;

  mark = t.screen.size();
  t.send("And Germany?\r");
  ASSERT_TRUE(t.expect("[length limit]", mark)) << t.screen;  // still usable after Ctrl-C
  mark = t.screen.size();
  t.send("/stats\r");
  ASSERT_TRUE(t.expect("turns 2,", mark)) << t.screen;
  t.send("/quit\r");
  EXPECT_EQ(t.wait_exit(), 0) << t.screen;
}

// /image queues a file for the next message (an unreadable one is an error at once); the default
// model has no vision tower, so that message is refused by name, and the chat goes on.
TEST(ChatRepl, ImageCommand) {
  Pty t(MLXQ_TEST_CACHE);
  ASSERT_TRUE(t.started());
  ASSERT_TRUE(t.expect("> ", 0)) << t.screen;
  size_t mark = t.screen.size();
  t.send("/image /nonexistent/cat.png\r");
  ASSERT_TRUE(t.expect("[error: ", mark)) << t.screen;
  ASSERT_TRUE(t.expect("/nonexistent/cat.png", mark)) << t.screen;
  mark = t.screen.size();
  t.send("/image\r");
  ASSERT_TRUE(t.expect("[usage: /image FILE]", mark)) << t.screen;
  mark = t.screen.size();
  t.send("/image " + test::data_path("gemma4-vision/images/img1.png") + "\r");
  ASSERT_TRUE(t.expect("[image 1: ", mark)) << t.screen;
  ASSERT_TRUE(t.expect("sent with your next message]", mark)) << t.screen;
  mark = t.screen.size();
  t.send("What is in it?\r");
  ASSERT_TRUE(t.expect("no vision tower", mark)) << t.screen;
  mark = t.screen.size();
  t.send("What is the capital of France?\r");  // the image went with the refused message
  ASSERT_TRUE(t.expect("Paris", mark)) << t.screen;
  ASSERT_TRUE(t.expect("[length limit]", mark)) << t.screen;
  t.send("/quit\r");
  EXPECT_EQ(t.wait_exit(), 0) << t.screen;
}

}  // namespace
}  // namespace mlxq
