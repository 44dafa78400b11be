// Test helper: the Highway targets this CPU supports (and the build generated), and a scope that
// forces dispatch to one of them.
#pragma once
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mlxq::test {

inline std::vector<int64_t> hwy_targets() {
  std::vector<int64_t> out;
  std::string names;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    out.push_back(t);
    names += std::string(names.empty() ? "" : " ") + hwy::TargetName(t);
  }
  EXPECT_FALSE(out.empty());
  ::testing::Test::RecordProperty("hwy_targets", names);
  return out;
}

// Restricts Highway to one target for the scope (and restores all on exit).
struct ForceTarget {
  explicit ForceTarget(int64_t t) { hwy::SetSupportedTargetsForTest(t); }
  ~ForceTarget() { hwy::SetSupportedTargetsForTest(0); }
  ForceTarget(const ForceTarget&) = delete;
  ForceTarget& operator=(const ForceTarget&) = delete;
};

}  // namespace mlxq::test
