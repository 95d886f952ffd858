#pragma once
// The check of accel::split_qkv_heads shared by the CPU test (unit) and the
// CUDA one (gpu): its views and its gradient against the hand-written view,
// permute and unbind, bit for bit, with each of q, k and v left out of the
// loss in turn (its gradient then missing).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/ops/split_heads.h"

namespace accel::testing {

inline void expect_split_heads_equal_hand_written(torch::Device device, torch::ScalarType dtype) {
  auto g = at::detail::createCPUGenerator(5);
  const int64_t B = 3, T = 7, H = 5, D = 6;  // odd sizes, H * D not a power of two
  auto x0 = torch::randn({B, T, 3 * H * D}, g).to(dtype);
  std::vector<torch::Tensor> upstream;
  for (int i = 0; i < 3; ++i) upstream.push_back(torch::randn({B, H, T, D}, g).to(dtype).to(device));
  for (int unused = -1; unused < 3; ++unused) {
    auto run = [&](bool op) {
      auto x = x0.to(device).requires_grad_();
      auto heads = op ? accel::split_qkv_heads(x, D) : x.view({B, T, 3, H, D}).permute({2, 0, 3, 1, 4}).unbind(0);
      torch::Tensor loss = torch::zeros({}, x.options());
      for (int i = 0; i < 3; ++i)
        if (i != unused) loss = loss + (heads[i] * upstream[i]).sum();
      loss.backward();
      std::vector<torch::Tensor> out;
      for (auto& h : heads) out.push_back(h.detach().cpu());
      out.push_back(x.grad().cpu());
      return out;
    };
    auto op = run(true), hand = run(false);
    for (size_t i = 0; i < op.size(); ++i) {
      ASSERT_EQ(op[i].sizes(), hand[i].sizes()) << i;
      EXPECT_TRUE(torch::equal(op[i], hand[i])) << (i < 3 ? "head " : "gradient ") << i << ", unused " << unused;
    }
  }
}

}  // namespace accel::testing
