// ZeRO-Offload on one GPU (label gpu): the model on the device, its fp32
// masters and Adam state in pinned host memory (or paged to files), the
// update on the CPU and the new values copied back chunk by chunk on a side
// stream. Compared with the same training with the optimizer on the GPU:
// fp32 within 1e-5 (cpu and nvme, exact update); bf16 master weights within
// bf16 rounding; the delayed update lags by one step until
// wait_for_everyone() brings it in, and equals the delayed rule computed with
// plain LibTorch.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/parallel/zero/zero_engine.h"
#include "support/cuda.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::TempDir;
namespace F = torch::nn::functional;

namespace {

torch::nn::Sequential make_net() {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(16, 256), torch::nn::GELU(), torch::nn::Linear(256, 256),
                               torch::nn::GELU(), torch::nn::Linear(256, 5));
}

struct Run {
  std::vector<torch::Tensor> params;   // after training (fp32, on the CPU)
  std::vector<torch::Tensor> lagging;  // before wait_for_everyone()
};

Run train(AcceleratorOptions options, int steps) {
  Accelerator acc(std::move(options));
  auto net = make_net();
  auto adamw =
      std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  auto [model, optimizer] = acc.prepare(net, adamw);
  auto g = at::detail::createCPUGenerator(7);
  for (int s = 0; s < steps; ++s) {
    auto x = torch::randn({64, 16}, g).to(acc.device());
    auto y = torch::randint(0, 5, {64}, g).to(acc.device());
    auto loss = F::cross_entropy(model(x), y);
    acc.backward(loss);
    acc.clip_grad_norm_(net->parameters(), 0.5);
    optimizer->step();
    optimizer->zero_grad();
  }
  Run r;
  // Copies (to() would alias a CPU fp32 parameter).
  for (auto& p : net->parameters()) r.lagging.push_back(p.detach().to(torch::kCPU, torch::kFloat, false, true));
  acc.wait_for_everyone();
  for (auto& p : net->parameters()) r.params.push_back(p.detach().to(torch::kCPU, torch::kFloat, false, true));
  return r;
}

// The delayed rule in plain LibTorch: gradients at the model, which receives
// the optimizer's (master's) values one step late; all of them at the end.
std::vector<torch::Tensor> delayed_reference(torch::Device device, int steps) {
  auto model = make_net(), master = make_net();
  model->to(device);
  master->to(device);
  torch::optim::AdamW opt(master->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  auto g = at::detail::createCPUGenerator(7);
  for (int s = 0; s < steps; ++s) {
    auto x = torch::randn({64, 16}, g).to(device);
    auto y = torch::randint(0, 5, {64}, g).to(device);
    model->zero_grad();
    F::cross_entropy(model->forward(x), y).backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 0.5);
    torch::NoGradGuard no_grad;
    auto mp = model->parameters(), tp = master->parameters();
    for (size_t i = 0; i < mp.size(); ++i) {
      tp[i].mutable_grad() = mp[i].grad().clone();
      mp[i].copy_(tp[i]);
    }
    opt.step();
  }
  std::vector<torch::Tensor> out;
  for (auto& p : master->parameters()) out.push_back(p.detach().to(torch::kCPU, torch::kFloat, false, true));
  return out;
}

class ZeroOffloadGpu : public ::testing::Test {
 protected:
  AcceleratorOptions offload(OffloadDevice device, bool delayed = false) const {
    return AcceleratorOptions().sharding(
        ShardingOptions().offload_optimizer(OffloadOptions().device(device).nvme_path(swap_).delayed_update(delayed)));
  }
  TempDir swap_{"gpu_swap"};
};

}  // namespace

TEST_F(ZeroOffloadGpu, OffloadedAdamWEqualsTheOptimizerOnTheGpu) {
  REQUIRE_CUDA();
  const auto on_gpu = train(AcceleratorOptions(), 8);
  const auto cpu = train(offload(OffloadDevice::cpu), 8);
  const auto nvme = train(offload(OffloadDevice::nvme), 8);
  EXPECT_LT(max_diff(cpu.params, on_gpu.params), 1e-5);
  EXPECT_EQ(max_diff(nvme.params, cpu.params), 0.0);
  EXPECT_EQ(max_diff(cpu.lagging, cpu.params), 0.0);  // nothing pending without the delay
}

TEST_F(ZeroOffloadGpu, Bf16MasterWeightsOffloadedTrackTheGpuMasters) {
  REQUIRE_CUDA();
  auto bf16 = [] { return AcceleratorOptions().mixed_precision("bf16").master_weights(true); };
  const auto on_gpu = train(bf16(), 8);
  auto options = bf16();
  options.sharding(offload(OffloadDevice::cpu).sharding());
  const auto cpu = train(options, 8);
  // The same fp32 masters rounded to bf16 the same way: equal up to a few bf16 steps.
  EXPECT_LT(max_diff(cpu.params, on_gpu.params), 2e-2);
  EXPECT_GT(max_diff(cpu.params, train(bf16(), 0).params), 1e-2);  // it trained
}

TEST_F(ZeroOffloadGpu, DelayedUpdateLagsOneStepUntilWaitedFor) {
  REQUIRE_CUDA();
  const auto exact = train(offload(OffloadDevice::cpu), 6);
  const auto delayed = train(offload(OffloadDevice::cpu, /*delayed=*/true), 6);
  EXPECT_GT(max_diff(delayed.lagging, delayed.params), 1e-4);  // the last update arrived at the wait
  EXPECT_GT(max_diff(delayed.params, exact.params), 1e-4);     // stale gradients change the trajectory
  EXPECT_LT(max_diff(delayed.params, delayed_reference(torch::kCUDA, 6)), 1e-5);
}
