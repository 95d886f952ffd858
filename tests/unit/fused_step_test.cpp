// FusedStep against LibTorch's own step() of Adam, AdamW and SGD: the same
// parameters after several steps (fp32, within rounding), with weight decay,
// amsgrad / momentum variants, two param groups and a parameter that has no
// gradient on some steps; and stepping alternately with FusedStep and the
// optimizer's step() continues one run (the state is shared).
#include <functional>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/optim/fused_adamw.h"
#include "accel/optim/fused_step.h"
#include "support/errors.h"
#include "support/tensors.h"

namespace {

using accel::testing::expect_close;
using accel::testing::expect_error;
using Params = std::vector<torch::Tensor>;
// How one update is made: the optimizer's step() or a fused one.
using Update = std::function<void(torch::optim::Optimizer&, int step)>;

template <class Opt, class Options>
Params train(const Options& options, const Options& second_group, const Update& update) {
  auto g = at::detail::createCPUGenerator(1);
  auto a = torch::randn({16, 8}, g).requires_grad_();
  auto b = torch::randn({8}, g).requires_grad_();
  auto c = torch::randn({8, 3}, g).requires_grad_();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(Params{a, b});
  groups.emplace_back(Params{c}, std::make_unique<Options>(second_group));
  Opt opt(groups, options);
  for (int s = 0; s < 12; ++s) {
    opt.zero_grad();
    auto x = torch::randn({4, 16}, g);
    auto h = torch::tanh(x.matmul(a) + b);
    auto loss = s % 3 == 2 ? h.pow(2).mean() : h.matmul(c).pow(2).mean();  // c idle every third step
    loss.backward();
    update(opt, s);
  }
  return {a.detach(), b.detach(), c.detach()};
}

const Update libtorch = [](torch::optim::Optimizer& opt, int) { opt.step(); };

template <class Opt, class Options>
void expect_fused_equals_libtorch(const Options& options, const Options& second,
                                  const std::function<void(accel::FusedStep&, Opt&)>& fused_update) {
  auto ref = train<Opt>(options, second, libtorch);
  accel::FusedStep fused;
  auto got = train<Opt>(options, second,
                        [&](torch::optim::Optimizer& opt, int) { fused_update(fused, static_cast<Opt&>(opt)); });
  expect_close(got, ref, 1e-6);
  // Fused for four steps, LibTorch's step() for four, fused again: the
  // step counts moved behind FusedStep's back and must be picked up.
  accel::FusedStep mixed;
  auto alternating = train<Opt>(options, second, [&](torch::optim::Optimizer& opt, int s) {
    if (s / 4 == 1) {
      opt.step();
    } else {
      fused_update(mixed, static_cast<Opt&>(opt));
    }
  });
  expect_close(alternating, ref, 1e-6);
}

void adamw_case(bool amsgrad) {
  using O = torch::optim::AdamWOptions;
  expect_fused_equals_libtorch<torch::optim::AdamW>(O(1e-2).betas({0.8, 0.99}).weight_decay(0.01).amsgrad(amsgrad),
                                                    O(3e-3).weight_decay(0.1).amsgrad(amsgrad),
                                                    [](accel::FusedStep& f, torch::optim::AdamW& o) { f.adamw(o); });
}

void adam_case(bool amsgrad) {
  using O = torch::optim::AdamOptions;
  expect_fused_equals_libtorch<torch::optim::Adam>(O(1e-2).betas({0.85, 0.995}).weight_decay(0.02).amsgrad(amsgrad),
                                                   O(5e-3).amsgrad(amsgrad),
                                                   [](accel::FusedStep& f, torch::optim::Adam& o) { f.adam(o); });
}

void sgd_case(const torch::optim::SGDOptions& options) {
  auto second = torch::optim::SGDOptions(options).lr(0.02);
  expect_fused_equals_libtorch<torch::optim::SGD>(options, second,
                                                  [](accel::FusedStep& f, torch::optim::SGD& o) { f.sgd(o); });
}

}  // namespace

TEST(FusedStep, AdamWEqualsLibTorch) { adamw_case(false); }
TEST(FusedStep, AdamWWithAmsgradEqualsLibTorch) { adamw_case(true); }
TEST(FusedStep, AdamEqualsLibTorch) { adam_case(false); }
TEST(FusedStep, AdamWithAmsgradEqualsLibTorch) { adam_case(true); }
TEST(FusedStep, PlainSgdEqualsLibTorch) { sgd_case(torch::optim::SGDOptions(0.05)); }
TEST(FusedStep, SgdWithMomentumEqualsLibTorch) {
  sgd_case(torch::optim::SGDOptions(0.05).momentum(0.9).dampening(0.1).weight_decay(0.01));
}
TEST(FusedStep, NesterovSgdEqualsLibTorch) { sgd_case(torch::optim::SGDOptions(0.05).momentum(0.8).nesterov(true)); }

TEST(FusedStep, FusedAdamWEqualsLibTorchAdamW) {
  using O = torch::optim::AdamWOptions;
  auto options = O(1e-2).weight_decay(0.05), second = O(2e-3);
  expect_close(train<accel::FusedAdamW>(options, second, libtorch),
               train<torch::optim::AdamW>(options, second, libtorch), 1e-6);
}

struct MyAdamW : torch::optim::AdamW {  // a subclass that may step differently
  using torch::optim::AdamW::AdamW;
};

TEST(FusedStep, SupportsExactlyLibTorchsAdamAdamWAndSgd) {
  auto p = torch::zeros({2}, torch::requires_grad());
  EXPECT_TRUE(accel::FusedStep::supports(torch::optim::AdamW(Params{p})));
  EXPECT_TRUE(accel::FusedStep::supports(torch::optim::Adam(Params{p})));
  EXPECT_TRUE(accel::FusedStep::supports(torch::optim::SGD(Params{p}, torch::optim::SGDOptions(0.1))));
  EXPECT_FALSE(accel::FusedStep::supports(torch::optim::RMSprop(Params{p})));
  EXPECT_FALSE(accel::FusedStep::supports(MyAdamW(Params{p})));           // a subclass keeps its own step()
  EXPECT_TRUE(accel::FusedStep::supports(accel::FusedAdamW(Params{p})));  // whose step() is FusedStep's
}

TEST(FusedStep, StepOnCudaLeavesCpuParametersAlone) {
  auto p = torch::ones({3}, torch::requires_grad());
  p.mutable_grad() = torch::ones({3});
  torch::optim::AdamW opt(Params{p});
  accel::FusedStep fused;
  EXPECT_FALSE(fused.step_on_cuda(opt));
  EXPECT_TRUE(torch::equal(p.detach(), torch::ones({3})));
  EXPECT_TRUE(opt.state().empty());
}

TEST(FusedStep, SparseGradientIsRefused) {
  auto p = torch::ones({4, 2}, torch::requires_grad());
  p.mutable_grad() = torch::ones({4, 2}).to_sparse();
  torch::optim::Adam opt(Params{p});
  accel::FusedStep fused;
  expect_error<std::invalid_argument>([&] { fused.adam(opt); }, {"sparse"});
}

// The learning rate read from a tensor (what a CUDA graph replays): with the
// lr changed every step and refresh_lr() called before each step, the same
// parameters as LibTorch's step(); advance_host_steps() moves the host's
// step counts by one for the parameters of the last step.
TEST(FusedStep, DeviceLearningRateFollowsTheScheduleAndCountsAdvance) {
  using O = torch::optim::AdamWOptions;
  const auto options = O(1e-2).weight_decay(0.01), second = O(3e-3);
  auto schedule = [](torch::optim::Optimizer& opt, int s) {
    for (auto& g : opt.param_groups()) g.options().set_lr(g.options().get_lr() * (s % 2 ? 0.5 : 1.5));
  };
  auto ref = train<torch::optim::AdamW>(options, second, [&](torch::optim::Optimizer& opt, int s) {
    schedule(opt, s);
    opt.step();
  });
  accel::FusedStep fused;
  fused.use_device_lr();
  auto got = train<torch::optim::AdamW>(options, second, [&](torch::optim::Optimizer& opt, int s) {
    schedule(opt, s);
    fused.refresh_lr(opt);
    fused.adamw(static_cast<torch::optim::AdamW&>(opt));
  });
  expect_close(got, ref, 1e-5);  // the lr tensor is float: the updates round it

  auto p = torch::ones({4}, torch::requires_grad());
  p.mutable_grad() = torch::ones({4});
  torch::optim::AdamW opt(std::vector<torch::Tensor>{p}, O(0.1));
  accel::FusedStep f;
  f.adamw(opt);
  auto& st = static_cast<torch::optim::AdamWParamState&>(*opt.state().at(p.unsafeGetTensorImpl()));
  EXPECT_EQ(st.step(), 1);
  f.advance_host_steps(opt);
  f.advance_host_steps(opt);
  EXPECT_EQ(st.step(), 3);
}
