#pragma once
// Test helpers for multi-process tests over Gloo on loopback.
#include <functional>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"

namespace accel::testing {

/// Runs `body` in `n` forked processes (CPU, Gloo, loopback). A failed gtest
/// assertion or an exception inside a child fails that rank; the calling
/// test then fails naming it.
void run_distributed(int n, const std::function<void()>& body, LaunchOptions options = {});

/// Path of a file in the source tree / build tree.
std::string source_path(const std::string& relative);
std::string binary_path(const std::string& relative);

}  // namespace accel::testing
