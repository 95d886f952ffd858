// FusedAdamW against LibTorch's AdamW: the same parameters after several
// steps (fp32 within rounding), with weight decay, amsgrad, two param groups
// and a parameter that has no gradient on some steps.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/optim/fused_adamw.h"

namespace {

template <class Opt>
std::vector<torch::Tensor> train(bool amsgrad, torch::Device device) {
  auto g = at::detail::createCPUGenerator(1);
  auto a = torch::randn({16, 8}, g).to(device).requires_grad_();
  auto b = torch::randn({8}, g).to(device).requires_grad_();
  auto c = torch::randn({8, 3}, g).to(device).requires_grad_();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a, b});
  groups.emplace_back(std::vector<torch::Tensor>{c},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(3e-3).weight_decay(0.1)));
  Opt opt(groups, torch::optim::AdamWOptions(1e-2).betas({0.8, 0.99}).weight_decay(0.01).amsgrad(amsgrad));
  for (int s = 0; s < 12; ++s) {
    opt.zero_grad();
    auto x = torch::randn({4, 16}, g).to(device);
    auto h = torch::tanh(x.matmul(a) + b);
    auto loss = s % 3 == 2 ? h.pow(2).mean() : h.matmul(c).pow(2).mean();  // c idle every third step
    loss.backward();
    opt.step();
  }
  return {a.detach().cpu(), b.detach().cpu(), c.detach().cpu()};
}

void expect_equal_training(bool amsgrad, torch::Device device) {
  auto ref = train<torch::optim::AdamW>(amsgrad, device);
  auto fused = train<accel::FusedAdamW>(amsgrad, device);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_LT((fused[i] - ref[i]).abs().max().item<double>(), 1e-6) << "tensor " << i;
  }
}

}  // namespace

TEST(FusedAdamW, EqualsLibTorchAdamW) { expect_equal_training(false, torch::kCPU); }
TEST(FusedAdamW, EqualsLibTorchAdamWWithAmsgrad) { expect_equal_training(true, torch::kCPU); }
