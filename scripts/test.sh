#!/usr/bin/env bash
# Builds mlxq and runs the test suite: the g++ Release build, then a clang build with
# AddressSanitizer + UndefinedBehaviorSanitizer. Extra arguments go to ctest (e.g. -L slow).
# MLXQ_TEST_FAST=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ -DMLXQ_WERROR=ON
cmake --build build -j "$jobs"
ctest --test-dir build -LE slow --output-on-failure -j "$jobs" "$@"
# The Node binding (node/): its types against the TypeScript compiler, then its tests on the
# addon this build made (the ASan build's addon is not loadable into an uninstrumented node).
node/node_modules/.bin/tsc -p node/tsconfig.json
MLXQ_BIN="$PWD/build/mlxq" node --test node/test/
MLXQ_BIN="$PWD/build/mlxq" node --test tests/server/

if [ "${MLXQ_TEST_FAST:-0}" != "1" ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
        -DMLXQ_SANITIZE=ON -DMLXQ_WERROR=ON
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan -LE slow --output-on-failure -j "$jobs" "$@"
  # The server under the sanitizers: its API tests and the 2-minute load test (a sanitizer report
  # in the server's log, or a leak at its exit, fails them; RSS flatness is the Release run's).
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 MLXQ_BIN="$PWD/build-asan/mlxq" MLXQ_LOAD_CHECK_RSS=0 \
    node --test tests/server/api.test.mjs tests/server/load.test.mjs
fi
