// accel::split_qkv_heads on the CPU: the views and the gradient equal the
// hand-written view/permute/unbind bit for bit (float32 and bf16, a head
// left out of the loss); views share qkv's storage; bad shapes are named.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/ops/split_heads.h"
#include "support/errors.h"
#include "support/split_heads_check.h"

using accel::testing::expect_error;

TEST(SplitQkvHeads, EqualsTheHandWrittenViewsAndGradientOnCpu) {
  accel::testing::expect_split_heads_equal_hand_written(torch::kCPU, torch::kFloat);
  accel::testing::expect_split_heads_equal_hand_written(torch::kCPU, torch::kBFloat16);
}

TEST(SplitQkvHeads, HeadsAreViewsOfTheProjection) {
  auto x = torch::arange(2 * 3 * 12, torch::kFloat).view({2, 3, 12}).requires_grad_();
  auto heads = accel::split_qkv_heads(x, 2);
  ASSERT_EQ(heads.size(), 3u);
  EXPECT_EQ(heads[1].sizes(), torch::IntArrayRef({2, 2, 3, 2}));
  EXPECT_EQ(heads[0].data_ptr(), x.data_ptr());
  // keys start after the 2 heads x 2 of the queries
  EXPECT_EQ(heads[1][0][0][0][0].item<float>(), 4.0f);
}

TEST(SplitQkvHeads, NamesBadShapes) {
  expect_error<std::invalid_argument>(
      [] {
        accel::split_qkv_heads(torch::zeros({2, 12}), 2);
      },
      {"split_qkv_heads", "[2, 12]", "[batch, seq, 3 * heads * head_size]"});
  expect_error<std::invalid_argument>(
      [] {
        accel::split_qkv_heads(torch::zeros({2, 3, 10}), 2);
      },
      {"head_size 2", "multiple of 3 * head_size"});
}
