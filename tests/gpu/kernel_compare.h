#pragma once
// What the GPU tests of accel's kernels share (label gpu): skipping where the
// kernels cannot run, and comparing a kernel's result with the ATen
// composition it replaces.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/ops/cuda_kernels.h"
#include "accel/ops/fused_kernels.h"
#include "support/cuda.h"

#if ACCEL_CUDA_KERNELS
#define REQUIRE_KERNELS() \
  REQUIRE_CUDA();         \
  if (!accel::fused_kernels_enabled()) GTEST_SKIP() << "ACCEL_FUSED_KERNELS=0"
#else
#define REQUIRE_KERNELS() GTEST_SKIP() << "built without accel's CUDA kernels (no CUDA compiler at configure time)"
#endif

namespace accel::testing {

/// got and want both undefined, or of one type and shape and at most `rel`
/// times want's largest magnitude apart (2^-7 at least for a bfloat16
/// result: one rounding step, whatever its inputs were).
inline void expect_close(const torch::Tensor& got, const torch::Tensor& want, double rel, const char* what) {
  ASSERT_EQ(got.defined(), want.defined()) << what;
  if (!want.defined()) return;
  EXPECT_EQ(got.scalar_type(), want.scalar_type()) << what;
  EXPECT_EQ(got.sizes(), want.sizes()) << what;
  const auto g = got.cpu().to(torch::kDouble), w = want.cpu().to(torch::kDouble);
  const double scale = std::max(w.abs().max().item<double>(), 1e-30);
  if (got.scalar_type() == torch::kBFloat16) rel = std::max(rel, std::ldexp(1.0, -7));
  EXPECT_LE((g - w).abs().max().item<double>(), rel * scale) << what << " (largest reference value " << scale << ")";
}

}  // namespace accel::testing
