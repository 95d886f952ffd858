#pragma once
// Test helpers for multi-process tests over Gloo on loopback.
#include <cstdint>
#include <functional>
#include <source_location>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/dist/launcher.h"

namespace accel::testing {

/// Runs `body` in `n` forked processes (CPU, Gloo, loopback). A failed gtest
/// assertion or an exception inside a child fails that rank; the calling
/// test then fails naming it.
void run_distributed(int n, const std::function<void()>& body, LaunchOptions options = {});

/// Seeds LibTorch's default CPU generator only: torch::manual_seed would
/// also initialise CUDA where present, and CUDA does not survive fork.
void seed_cpu(uint64_t seed);

/// Expects every rank to hold exactly the same values in each of `tensors`
/// (a collective: every rank calls it, with tensors of the same shapes).
void expect_ranks_agree(const std::vector<torch::Tensor>& tensors,
                        std::source_location where = std::source_location::current());

}  // namespace accel::testing
