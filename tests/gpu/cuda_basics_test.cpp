// GPU checks (label gpu): each test skips itself when no CUDA device exists.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/amp/autocast.h"
#include "accel/state.h"
#include "support/cuda.h"

TEST(Gpu, DeviceIsLocalRankGpu) {
  REQUIRE_CUDA();
  accel::Topology t;
  EXPECT_EQ(accel::choose_device(t, false), torch::Device(torch::kCUDA, 0));
  EXPECT_EQ(accel::choose_device(t, true), torch::Device(torch::kCPU));
  t.local_rank = static_cast<int>(torch::cuda::device_count());
  t.local_world_size = t.local_rank + 1;
  t.world_size = t.local_world_size;
  EXPECT_THROW(accel::choose_device(t, false), std::invalid_argument);
}

TEST(Gpu, AutocastBf16MatchesFp32WithinBf16Precision) {
  REQUIRE_CUDA();
  torch::manual_seed(0);
  auto a = torch::randn({64, 64}, torch::kCUDA), b = torch::randn({64, 64}, torch::kCUDA);
  auto ref = torch::matmul(a.to(torch::kFloat64), b.to(torch::kFloat64));
  torch::Tensor out;
  {
    accel::AutocastGuard guard(torch::Device(torch::kCUDA), accel::MixedPrecision::bf16);
    out = torch::matmul(a, b);
  }
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kFloat);  // guard gone
  EXPECT_LT((out.to(torch::kFloat64) - ref).abs().max().item<double>() / ref.abs().max().item<double>(), 2e-2);
}

TEST(Gpu, ProcessStateChoosesNcclOnCuda) {
  REQUIRE_CUDA();
  // A single process: no group, but the device and default backend follow CUDA.
  // Earlier tests of this binary leave the process state made from their
  // options: start from none (init refuses to make a second).
  accel::ProcessState::shutdown();
  auto& st = accel::ProcessState::init(accel::StateOptions().env(accel::env_from_map({})));
  EXPECT_TRUE(st.device().is_cuda());
  EXPECT_EQ(st.backend(), accel::Backend::nccl);
  accel::ProcessState::shutdown();
}
