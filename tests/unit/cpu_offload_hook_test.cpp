// cpu_offload_with_hook (big_model/cpu_offload_hook.h) without a GPU: the
// refusals, a model offloaded to the CPU with the CPU as execution device
// computes what it computes without the hook, and remove() takes the hook
// off. Where the models live along a chain needs a second device: see
// tests/gpu/cpu_offload_hook_gpu_test.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/big_model/cpu_offload_hook.h"
#include "accel/big_model/hooks.h"
#include "support/device_map_model.h"
#include "support/errors.h"

namespace {

using accel::testing::expect_error;

TEST(CpuOffloadHook, Refusals) {
  expect_error<std::invalid_argument>([] { accel::cpu_offload_with_hook(nullptr, torch::kCPU); }, {"null"});
  accel::Unit<torch::nn::ReLU> relu(torch::nn::ReLU(), "Activation");
  expect_error<std::invalid_argument>([&] { accel::cpu_offload_with_hook(relu.slot(), torch::kCPU); },
                                      {"has no parameters"});
  EXPECT_TRUE(accel::hooks_of(*relu.slot()).empty());
}

TEST(CpuOffloadHook, ChainOnTheCpuComputesTheSameAndComesOff) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(2);
  accel::testing::MapLM lm(1000, 64, 128, 2);
  lm->eval();
  torch::nn::Linear head(1000, 10);  // on the logits
  const auto tokens = torch::randint(0, 1000, {2, 7});
  const auto expected = head->forward(lm->forward(tokens));

  accel::Unit<accel::testing::MapLM> first(lm, "MapLM");
  accel::Unit<torch::nn::Linear> second(head, "Head");
  auto hook_1 = accel::cpu_offload_with_hook(first.slot(), torch::kCPU);
  auto hook_2 = accel::cpu_offload_with_hook(second.slot(), torch::kCPU, hook_1);
  ASSERT_EQ(accel::hooks_of(*second.slot()).size(), 1u);
  EXPECT_EQ(accel::hooks_of(*second.slot())[0], hook_2->hook());
  EXPECT_EQ(&hook_2->model(), head.get());
  EXPECT_TRUE(torch::equal(second(first(tokens)), expected));
  hook_1->offload();
  EXPECT_TRUE(torch::equal(second(first(tokens)), expected));

  hook_1->remove();
  hook_2->remove();
  EXPECT_TRUE(accel::hooks_of(*first.slot()).empty());
  EXPECT_TRUE(accel::hooks_of(*second.slot()).empty());
  EXPECT_TRUE(torch::equal(second(first(tokens)), expected));
}

}  // namespace
