#pragma once
// Peer tests run the Python peers from the .venv (ACCEL_PYTHON). Where a peer
// is missing they skip, so that a developer without the .venv can still run
// the rest; CI sets ACCEL_REQUIRE_PEERS=1 (scripts/test.sh does), and there
// a missing peer is a failure that names it: a broken peer install must not
// pass CI as a row of skips.
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace accel::testing {

/// True when ACCEL_REQUIRE_PEERS is set to 1: missing peers fail, not skip.
bool peers_required();

/// Why the given Python modules cannot be used from ACCEL_PYTHON (no python
/// configured, the file missing, or the import failing, with Python's own
/// message), or nothing when all import. Each set is checked once per process.
std::optional<std::string> missing_peers(std::initializer_list<const char*> modules);

/// A program of the .venv's bin folder (torchrun, accelerate).
std::string venv_program(const std::string& name);

/// A script of tests/peer/scripts/.
std::string peer_script(const std::string& name);

/// What `ACCEL_PYTHON tests/peer/scripts/<name>` prints, as JSON; run once
/// per process (throws where it does not run or print JSON).
const nlohmann::json& peer_script_json(const std::string& name);

/// Runs `ACCEL_PYTHON tests/peer/scripts/<name> <args...>` and returns the
/// JSON it prints after a line "@@RESULT@@" (what it prints before is its
/// own log); throws with all it printed when it fails or prints no result.
nlohmann::json run_peer_script(const std::string& name, const std::vector<std::string>& args);

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

/// Skips the test (or fails it when peers are required) unless the program
/// at `path` exists: one that scripts/setup.sh installs (mpirun, srun).
#define REQUIRE_PROGRAM(path)                                                 \
  if (!std::filesystem::exists(path)) {                                       \
    if (::accel::testing::peers_required()) {                                 \
      GTEST_FAIL() << (path) << " is missing (scripts/setup.sh installs it)"; \
    } else {                                                                  \
      GTEST_SKIP() << (path) << " is missing (scripts/setup.sh installs it; " \
                   << "ACCEL_REQUIRE_PEERS=1 makes this a failure)";          \
    }                                                                         \
  }
