#pragma once
// Test helpers for multi-process tests over Gloo on loopback.
#include <cstdint>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"

namespace accel::testing {

/// Runs `body` in `n` forked processes (CPU, Gloo, loopback). A failed gtest
/// assertion or an exception inside a child fails that rank; the calling
/// test then fails naming it.
void run_distributed(int n, const std::function<void()>& body, LaunchOptions options = {});

/// Seeds LibTorch's default CPU generator only: torch::manual_seed would
/// also initialise CUDA where present, and CUDA does not survive fork.
void seed_cpu(uint64_t seed);

/// What `command` prints on stdout (run by the shell); throws if it cannot start.
std::string command_output(const std::string& command);

/// The whole file as a string (empty when it cannot be read).
std::string read_text(const std::string& path);

/// Path of a file in the source tree / build tree.
std::string source_path(const std::string& relative);
std::string binary_path(const std::string& relative);

}  // namespace accel::testing
