#pragma once
// Peer tests run the Python peers from the .venv (ACCEL_PYTHON). Where a peer
// is missing they skip, so that a developer without the .venv can still run
// the rest; CI sets ACCEL_REQUIRE_PEERS=1 (scripts/test.sh does), and there
// a missing peer is a failure that names it: a broken peer install must not
// pass CI as a row of skips.
#include <initializer_list>
#include <optional>
#include <string>

#include <gtest/gtest.h>

namespace accel::testing {

/// True when ACCEL_REQUIRE_PEERS is set to 1: missing peers fail, not skip.
bool peers_required();

/// Why the given Python modules cannot be used from ACCEL_PYTHON (no python
/// configured, the file missing, or the import failing, with Python's own
/// message), or nothing when all import. Each set is checked once per process.
std::optional<std::string> missing_peers(std::initializer_list<const char*> modules);

}  // namespace accel::testing

/// Skips the test (or fails it when peers are required) unless every named
/// Python module imports from the .venv: REQUIRE_PEERS("accelerate", "torch").
#define REQUIRE_PEERS(...)                                                              \
  if (auto accel_missing_ = ::accel::testing::missing_peers({__VA_ARGS__})) {           \
    if (::accel::testing::peers_required()) {                                           \
      GTEST_FAIL() << "peer missing (ACCEL_REQUIRE_PEERS=1): " << *accel_missing_;      \
    } else {                                                                            \
      GTEST_SKIP() << "peer missing: " << *accel_missing_ << " (ACCEL_REQUIRE_PEERS=1 " \
                   << "makes this a failure)";                                          \
    }                                                                                   \
  }
