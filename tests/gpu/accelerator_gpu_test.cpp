// The Accelerator on one GPU (label gpu; skipped without CUDA): the model
// and batches land on cuda:0, fp32 training equals the CPU run, fp16 loss
// scaling works with the scale on the GPU, bf16 master weights stay fp32,
// prepared optimizers step with the fused kernels.
#include <functional>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/optim/fused_adamw.h"
#include "accel/optim/schedules.h"
#include "support/cuda.h"

using namespace accel;
namespace F = torch::nn::functional;

namespace {

torch::nn::Sequential make_net() {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(8, 32), torch::nn::Tanh(), torch::nn::Linear(32, 3));
}

// Labels from a fixed linear map of the inputs: learnable.
DataLoader<TensorDict> data() {
  auto g = at::detail::createCPUGenerator(3);
  auto x = torch::randn({64, 8}, g);
  auto y = x.matmul(torch::randn({8, 3}, g)).argmax(1);
  return make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"x", x}, {"y", y}}),
                          DataLoaderOptions(16).pin_memory(true));
}

// Plain LibTorch on the CPU, in float64: the reference.
std::vector<torch::Tensor> cpu_reference(int epochs) {
  auto net = make_net();
  net->to(torch::kFloat64);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
  auto loader = data();
  for (int e = 0; e < epochs; ++e)
    for (auto& b : loader) {
      opt.zero_grad();
      F::cross_entropy(net->forward(b["x"].to(torch::kFloat64)), b["y"]).backward();
      opt.step();
    }
  return net->parameters();
}

}  // namespace

TEST(GpuAccelerator, Fp32OnTheGpuEqualsTheCpuReference) {
  REQUIRE_CUDA();
  Accelerator acc(AcceleratorOptions().non_blocking(true));
  ASSERT_TRUE(acc.device().is_cuda());
  auto net = make_net();
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
  auto [model, optimizer, loader] = acc.prepare(net, opt, data());
  for (auto& p : net->parameters()) EXPECT_TRUE(p.is_cuda());
  for (int e = 0; e < 3; ++e)
    for (auto& b : loader) {
      EXPECT_TRUE(b["x"].is_cuda());
      acc.backward(F::cross_entropy(model(b["x"]), b["y"]));
      optimizer->step();
      optimizer->zero_grad();
    }
  auto ref = cpu_reference(3);
  auto mine = net->parameters();
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_LT((mine[i].cpu().to(torch::kFloat64) - ref[i]).abs().max().item<double>(), 1e-5) << i;
}

TEST(GpuAccelerator, Fp16ScalerSkipsOverflowAndTrains) {
  REQUIRE_CUDA();
  // The default growth interval (2000): the scale only moves for the injected nan.
  Accelerator acc(AcceleratorOptions().mixed_precision("fp16"));
  auto net = make_net();
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.01));
  auto [model, optimizer, loader] = acc.prepare(net, opt, data());
  std::vector<double> epoch_loss;
  int step = 0;
  for (int e = 0; e < 10; ++e) {
    double sum = 0;
    for (auto& b : loader) {
      auto out = model(b["x"]);
      EXPECT_EQ(out.scalar_type(), torch::kFloat);
      auto loss = F::cross_entropy(out, b["y"]);
      acc.backward(loss);
      const bool poison = step == 5;
      if (poison) net[2]->as<torch::nn::Linear>()->weight.grad()[0][0] = std::numeric_limits<float>::quiet_NaN();
      const double scale = acc.scaler()->get_scale();
      optimizer->step();
      optimizer->zero_grad();
      EXPECT_EQ(optimizer->step_was_skipped(), poison) << "step " << step;
      if (poison) {
        EXPECT_EQ(acc.scaler()->get_scale(), scale / 2);
      }
      sum += loss.item<double>();
      ++step;
    }
    epoch_loss.push_back(sum / 4);
  }
  EXPECT_LT(epoch_loss.back(), epoch_loss.front() * 0.5);
}

TEST(GpuAccelerator, Bf16MasterWeightsOnTheGpu) {
  REQUIRE_CUDA();
  Accelerator acc(AcceleratorOptions().mixed_precision("bf16").master_weights(true));
  auto net = make_net();
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
  auto [model, optimizer, loader] = acc.prepare(net, opt, data());
  for (int e = 0; e < 3; ++e)
    for (auto& b : loader) {
      acc.backward(F::cross_entropy(model(b["x"]), b["y"]));
      optimizer->step();
      optimizer->zero_grad();
    }
  auto ref = cpu_reference(3);
  const auto& masters = optimizer->master_weights()->masters();
  auto params = net->parameters();
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(params[i].scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(params[i].is_cuda());
    EXPECT_EQ(masters[i].scalar_type(), torch::kFloat);
    EXPECT_LT((masters[i].cpu().to(torch::kFloat64) - ref[i]).abs().max().item<double>(), 2e-2) << i;
  }
}

// Prepared LibTorch optimizers step with the fused kernels on CUDA
// (fused_optimizer_step, on by default): the same training as their own
// step() (fused_optimizer_step off) and as FusedAdamW.
TEST(GpuAccelerator, FusedOptimizerStepEqualsLibTorchsStep) {
  REQUIRE_CUDA();
  using MakeOpt = std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>;
  auto run = [](const MakeOpt& make_opt, bool fused) {
    Accelerator acc(AcceleratorOptions().fused_optimizer_step(fused));
    auto net = make_net();
    auto [model, optimizer, loader] = acc.prepare(net, make_opt(net->parameters()), data());
    for (int e = 0; e < 3; ++e)
      for (auto& b : loader) {
        acc.backward(F::cross_entropy(model(b["x"]), b["y"]));
        optimizer->step();
        optimizer->zero_grad();
      }
    return net->parameters();
  };
  const auto adamw = torch::optim::AdamWOptions(1e-2).weight_decay(0.05);
  const std::vector<std::pair<std::string, MakeOpt>> optimizers = {
      {"AdamW", [&](auto p) { return std::make_shared<torch::optim::AdamW>(p, adamw); }},
      {"FusedAdamW", [&](auto p) { return std::make_shared<FusedAdamW>(p, adamw); }},
      {"Adam",
       [](auto p) { return std::make_shared<torch::optim::Adam>(p, torch::optim::AdamOptions(1e-2).amsgrad(true)); }},
      {"SGD", [](auto p) {
         return std::make_shared<torch::optim::SGD>(p, torch::optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
       }}};
  const MakeOpt& reference = optimizers[0].second;
  auto ref_adamw = run(reference, false);
  for (const auto& [name, make] : optimizers) {
    auto want = name == "FusedAdamW" ? ref_adamw : run(make, false);
    auto got = run(make, true);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_LT((got[i] - want[i]).abs().max().item<double>(), 1e-5) << name << " tensor " << i;
  }
  // And the fused path is the one taken on CUDA.
  auto p = torch::ones({3}, torch::TensorOptions().device(torch::kCUDA).requires_grad(true));
  p.mutable_grad() = torch::ones({3}, torch::kCUDA);
  torch::optim::SGD sgd(std::vector<torch::Tensor>{p}, torch::optim::SGDOptions(0.5));
  FusedStep fused;
  EXPECT_TRUE(fused.step_on_cuda(sgd));
  EXPECT_TRUE(torch::allclose(p.detach().cpu(), torch::full({3}, 0.5)));
}
