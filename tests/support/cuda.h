#pragma once
// GPU tests (label gpu) skip themselves where no CUDA device is present (CI).
#include <gtest/gtest.h>
#include <torch/cuda.h>

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"
