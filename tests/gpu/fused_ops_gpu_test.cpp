// accel::linear_cross_entropy on the GPU (label gpu) under bf16 autocast,
// against linear + cross_entropy under the same autocast: the loss and the
// gradients agree within bf16 rounding, at a vocab that needs padding; and
// accel::split_qkv_heads on CUDA tensors (the same check as on the CPU).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/amp/autocast.h"
#include "accel/ops/linear_cross_entropy.h"
#include "support/cuda.h"
#include "support/split_heads_check.h"

namespace F = torch::nn::functional;

TEST(FusedOpsGpu, LinearCrossEntropyUnderBf16AutocastMatchesTheUnfusedPath) {
  REQUIRE_CUDA();
  auto g = at::detail::createCPUGenerator(3);
  const int64_t V = 1001;  // padded to 1024 inside
  auto h0 = torch::randn({4, 300, 128}, g);
  auto w0 = torch::randn({V, 128}, g) * 0.05;
  auto t = torch::randint(0, V, {4, 300}, g).cuda();
  auto run = [&](bool fused) {
    auto h = h0.cuda().requires_grad_();
    auto w = w0.cuda().requires_grad_();
    torch::Tensor loss;
    {
      accel::AutocastGuard autocast(torch::kCUDA, torch::kBFloat16);
      if (fused) {
        loss = accel::linear_cross_entropy(h, w, t, accel::LinearCrossEntropyOptions().chunk_size(500));
      } else {
        auto logits = F::linear(h, w).to(torch::kFloat);
        loss = F::cross_entropy(logits.view({-1, V}), t.view({-1}));
      }
    }
    loss.backward();
    return std::vector<torch::Tensor>{loss.detach().cpu(), h.grad().cpu(), w.grad().cpu()};
  };
  auto fused = run(true);
  auto plain = run(false);
  EXPECT_NEAR(fused[0].item<double>(), plain[0].item<double>(), 2e-3);
  for (int i = 1; i < 3; ++i) {
    const double scale = plain[i].abs().max().item<double>();
    EXPECT_LT((fused[i] - plain[i]).abs().max().item<double>(), 2e-2 * scale) << "gradient " << i;
  }
}

TEST(FusedOpsGpu, SplitQkvHeadsEqualsTheHandWrittenViewsOnCuda) {
  REQUIRE_CUDA();
  accel::testing::expect_split_heads_equal_hand_written(torch::kCUDA, torch::kBFloat16);
  accel::testing::expect_split_heads_equal_hand_written(torch::kCUDA, torch::kFloat);
}
