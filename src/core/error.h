// mlxq::Error: the one exception type library code throws. Messages name the file, tensor or
// field at fault and give expected vs found, so the CLI can print them as one line.
#pragma once
#include <stdexcept>
#include <string>

namespace mlxq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws mlxq::Error(msg) when `cond` is false. For input validation, not hot loops.
inline void check(bool cond, const std::string& msg) {
  if (!cond) throw Error(msg);
}

}  // namespace mlxq
