// cpu_offload_with_hook (big_model/cpu_offload_hook.h) on a GPU: where each
// model's parameters live after each call of a two-model chain, as
// Accelerate's CpuOffload hook leaves them, and the outputs equal the
// models' own on the CPU.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/big_model/cpu_offload_hook.h"
#include "accel/big_model/hooks.h"
#include "support/cuda.h"
#include "support/device_map_model.h"

namespace {

using accel::testing::MapLM;

bool all_on(torch::nn::Module& m, c10::DeviceType type) {
  for (const auto& p : m.parameters())
    if (p.device().type() != type) return false;
  for (const auto& b : m.buffers())
    if (b.device().type() != type) return false;
  return true;
}

TEST(CpuOffloadHookGpu, ChainKeepsOneModelOnTheGpuAtATime) {
  REQUIRE_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  MapLM lm(1000, 64, 128, 2);
  lm->eval();
  torch::nn::Linear head(1000, 10);  // on the logits
  const auto tokens = torch::randint(0, 1000, {2, 7});
  const auto hidden_cpu = lm->forward(tokens);
  const auto out_cpu = head->forward(hidden_cpu);

  lm->to(torch::kCUDA);  // attaching the hook brings it to the CPU
  accel::Unit<MapLM> first(lm, "MapLM");
  accel::Unit<torch::nn::Linear> second(head, "Head");
  auto hook_1 = accel::cpu_offload_with_hook(first.slot(), torch::kCUDA);
  auto hook_2 = accel::cpu_offload_with_hook(second.slot(), torch::kCUDA, hook_1);
  EXPECT_TRUE(all_on(*lm, c10::kCPU));
  EXPECT_TRUE(all_on(*head, c10::kCPU));

  const auto hidden = first(tokens);  // CPU tokens: moved with the model
  EXPECT_TRUE(hidden.is_cuda());      // outputs stay on the execution device
  EXPECT_TRUE(all_on(*lm, c10::kCUDA));
  EXPECT_TRUE(all_on(*head, c10::kCPU));
  EXPECT_TRUE(torch::allclose(hidden.cpu(), hidden_cpu, 1e-4, 1e-4));
  // Called again it stays (inputs given on its device, as Accelerate leaves them alone).
  EXPECT_TRUE(torch::allclose(first(tokens.cuda()).cpu(), hidden_cpu, 1e-4, 1e-4));
  EXPECT_TRUE(all_on(*lm, c10::kCUDA));

  const auto out = second(hidden);  // the previous model goes back first
  EXPECT_TRUE(all_on(*lm, c10::kCPU));
  EXPECT_TRUE(all_on(*head, c10::kCUDA));
  EXPECT_TRUE(out.is_cuda());
  EXPECT_TRUE(torch::allclose(out.cpu(), out_cpu, 1e-4, 1e-4));

  const auto again = first(tokens);  // its own hook brings it back; the head is not its "previous"
  EXPECT_TRUE(all_on(*lm, c10::kCUDA));
  EXPECT_TRUE(all_on(*head, c10::kCUDA));
  EXPECT_TRUE(torch::allclose(again.cpu(), hidden_cpu, 1e-4, 1e-4));

  hook_2->offload();
  hook_1->offload();
  EXPECT_TRUE(all_on(*lm, c10::kCPU));
  EXPECT_TRUE(all_on(*head, c10::kCPU));

  hook_2->remove();  // no hook: the head runs where it is
  EXPECT_TRUE(accel::hooks_of(*second.slot()).empty());
  EXPECT_TRUE(second(hidden_cpu).is_cpu());
  EXPECT_TRUE(all_on(*head, c10::kCPU));
}

}  // namespace
