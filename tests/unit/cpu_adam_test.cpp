// CPU Adam against LibTorch's AdamW and Adam (fp32, several steps, odd
// lengths that are no multiple of any vector width, lengths above the
// per-thread grain, weight decay on and off, amsgrad), bf16 gradients
// against the fp32 update of the same rounded gradients (bit for bit), the
// bf16/fp16 parameter copy against LibTorch's casts (bit for bit, special
// values included), the same result with one thread and with two, and the
// errors for bad tensors.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/optim/cpu_adam.h"
#include "support/errors.h"
#include "support/tensors.h"

namespace {

using accel::testing::expect_close;
using accel::testing::expect_equal;
using accel::testing::expect_error;
using Params = std::vector<torch::Tensor>;

// Lengths: tiny, odd, one past a vector, and more than one thread's grain.
const std::vector<int64_t> kLengths = {1, 7, 33, 1000, 100003};

Params make_params(uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  Params ps;
  for (int64_t n : kLengths) ps.push_back(torch::randn({n}, g).requires_grad_());
  return ps;
}

// Steps `opt` with pseudo-random gradients (the same sequence for every run).
template <class Opt, class Options>
Params train(const Options& options, int steps = 8) {
  Params ps = make_params(3);
  Opt opt(ps, options);
  auto g = at::detail::createCPUGenerator(11);
  for (int s = 0; s < steps; ++s) {
    for (auto& p : ps) p.mutable_grad() = torch::randn(p.sizes(), g) * (s % 3 + 0.5);
    opt.step();
  }
  Params out;
  for (auto& p : ps) out.push_back(p.detach().clone());
  return out;
}

TEST(CpuAdam, AdamWEqualsLibTorch) {
  for (double wd : {0.0, 0.1}) {
    for (bool amsgrad : {false, true}) {
      SCOPED_TRACE("weight_decay " + std::to_string(wd) + " amsgrad " + std::to_string(amsgrad));
      auto o = torch::optim::AdamWOptions(1e-2).weight_decay(wd).amsgrad(amsgrad).betas({0.8, 0.99}).eps(1e-6);
      expect_close(train<accel::CpuAdamW>(o), train<torch::optim::AdamW>(o), 2e-6);
    }
  }
}

TEST(CpuAdam, AdamEqualsLibTorch) {
  for (double wd : {0.0, 0.05}) {
    for (bool amsgrad : {false, true}) {
      SCOPED_TRACE("weight_decay " + std::to_string(wd) + " amsgrad " + std::to_string(amsgrad));
      auto o = torch::optim::AdamOptions(3e-3).weight_decay(wd).amsgrad(amsgrad);
      expect_close(train<accel::CpuAdam>(o), train<torch::optim::Adam>(o), 2e-6);
    }
  }
}

TEST(CpuAdam, StateMatchesLibTorchsAfterSteps) {
  // The moments are LibTorch's too, so checkpoints and a switch of optimizer keep working.
  auto o = torch::optim::AdamWOptions(1e-2).weight_decay(0.01);
  Params a = make_params(5), b = make_params(5);
  accel::CpuAdamW mine(a, o);
  torch::optim::AdamW ref(b, o);
  auto g = at::detail::createCPUGenerator(2);
  for (int s = 0; s < 4; ++s) {
    for (size_t i = 0; i < a.size(); ++i) {
      auto grad = torch::randn(a[i].sizes(), g);
      a[i].mutable_grad() = grad;
      b[i].mutable_grad() = grad.clone();
    }
    mine.step();
    ref.step();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    auto& sm = static_cast<torch::optim::AdamWParamState&>(*mine.state().at(a[i].unsafeGetTensorImpl()));
    auto& sr = static_cast<torch::optim::AdamWParamState&>(*ref.state().at(b[i].unsafeGetTensorImpl()));
    EXPECT_EQ(sm.step(), sr.step());
    EXPECT_LT((sm.exp_avg() - sr.exp_avg()).abs().max().item<double>(), 1e-6);
    EXPECT_LT((sm.exp_avg_sq() - sr.exp_avg_sq()).abs().max().item<double>(), 1e-6);
  }
}

TEST(CpuAdam, StepsAnAdamOrAdamWOnItsOwnState) {
  // What an engine keeping the user's optimizer over CPU slices calls.
  struct ViaFunction : torch::optim::AdamW {
    using AdamW::AdamW;
    torch::Tensor step(LossClosure = nullptr) override {
      EXPECT_TRUE(accel::cpu_adam_step(static_cast<torch::optim::Optimizer&>(*this)));
      return {};
    }
  };
  auto o = torch::optim::AdamWOptions(1e-2).weight_decay(0.1);
  expect_close(train<ViaFunction>(o), train<torch::optim::AdamW>(o), 2e-6);
  auto w = torch::zeros({3}, torch::requires_grad());
  w.mutable_grad() = torch::ones({3});
  torch::optim::SGD sgd({w}, torch::optim::SGDOptions(0.1));
  EXPECT_FALSE(accel::cpu_adam_step(sgd));
  EXPECT_TRUE(torch::equal(w, torch::zeros({3})));
}

struct Flat {
  torch::Tensor param, exp_avg, exp_avg_sq, max_exp_avg_sq;
  static Flat make(int64_t n) {
    auto g = at::detail::createCPUGenerator(7);
    return {torch::randn({n}, g), torch::zeros({n}), torch::zeros({n}), torch::zeros({n})};
  }
  Flat clone() const { return {param.clone(), exp_avg.clone(), exp_avg_sq.clone(), max_exp_avg_sq.clone()}; }
};

TEST(CpuAdam, Bf16GradientsEqualTheFp32UpdateOfTheRoundedGradients) {
  const int64_t n = 70001;
  for (bool adamw : {true, false}) {
    auto o = accel::CpuAdamOptions(1e-3).weight_decay(0.02).adamw(adamw).amsgrad(!adamw);
    Flat x = Flat::make(n), y = x.clone();
    auto g = at::detail::createCPUGenerator(9);
    for (int64_t step = 1; step <= 5; ++step) {
      auto grad16 = torch::randn({n}, g).to(torch::kBFloat16);
      accel::cpu_adam_step(o, step, {x.param, grad16, x.exp_avg, x.exp_avg_sq, x.max_exp_avg_sq});
      accel::cpu_adam_step(o, step, {y.param, grad16.to(torch::kFloat), y.exp_avg, y.exp_avg_sq, y.max_exp_avg_sq});
    }
    expect_equal(x.param, y.param, "param");
    expect_equal(x.exp_avg, y.exp_avg, "exp_avg");
    expect_equal(x.exp_avg_sq, y.exp_avg_sq, "exp_avg_sq");
    expect_equal(x.max_exp_avg_sq, y.max_exp_avg_sq, "max_exp_avg_sq");
  }
}

TEST(CpuAdam, ParamCopyEqualsLibTorchsCasts) {
  // Random values over many scales plus the awkward ones: half's largest
  // finite value and the ones that round past it, its subnormals and the
  // values that round to zero, infinities, NaN, signed zeros.
  auto g = at::detail::createCPUGenerator(4);
  auto scales = torch::pow(10.0, torch::randint(-12, 8, {50000}, g).to(torch::kFloat));
  auto values = torch::randn({50000}, g) * scales;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  auto special = torch::tensor({0.f, -0.f, inf, -inf, nan, 65504.f, 65519.f, 65520.f, -65520.f, 1e5f, 6.1e-5f, 5.96e-8f,
                                2.98e-8f, 2.99e-8f, 1e-9f, -3e-6f, 1.0009765625f, 3.0e38f, 1.17549435e-38f});
  auto param = torch::cat({values, special});
  const int64_t n = param.numel();
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    // lr 0, zero gradients: the parameters stay as they are and the copy is their cast.
    auto p = param.clone();
    auto copy = torch::empty({n}, dtype);
    accel::cpu_adam_step(accel::CpuAdamOptions(0.0).weight_decay(0.0), 1,
                         {p, torch::zeros({n}), torch::zeros({n}), torch::zeros({n}), {}, copy});
    auto want = param.to(dtype);
    // Bit patterns, NaN aside: any NaN will do (LibTorch's own vectorised
    // and scalar casts give different NaN bits).
    auto both_nan = torch::isnan(copy.to(torch::kFloat)) & torch::isnan(want.to(torch::kFloat));
    auto bad = ((copy.view(torch::kShort) != want.view(torch::kShort)) & ~both_nan).nonzero();
    EXPECT_EQ(bad.size(0), 0) << c10::toString(dtype);
    for (int64_t i = 0; i < std::min<int64_t>(bad.size(0), 5); ++i) {
      const int64_t k = bad[i].item<int64_t>();
      ADD_FAILURE() << "value " << param[k].item<float>() << " -> " << copy[k].item<float>() << ", want "
                    << want[k].item<float>();
    }
    EXPECT_EQ(torch::isnan(copy.to(torch::kFloat)).sum().item<int64_t>(), 1);
  }
  // After a real update the copy is the cast of the new parameters.
  Flat x = Flat::make(1001);
  auto copy = torch::empty({1001}, torch::kBFloat16);
  accel::cpu_adam_step(accel::CpuAdamOptions(0.1), 1,
                       {x.param, torch::randn({1001}, g), x.exp_avg, x.exp_avg_sq, {}, copy});
  expect_equal(copy, x.param.to(torch::kBFloat16), "bf16 copy after a step");
}

TEST(CpuAdam, ResultDoesNotDependOnTheNumberOfThreads) {
  const int threads = at::get_num_threads();
  const int64_t n = 300007;
  auto o = accel::CpuAdamOptions(1e-2);
  auto grad = torch::randn({n}, at::detail::createCPUGenerator(8));
  Flat one = Flat::make(n), many = one.clone();
  at::set_num_threads(1);
  for (int64_t s = 1; s <= 3; ++s) accel::cpu_adam_step(o, s, {one.param, grad, one.exp_avg, one.exp_avg_sq});
  at::set_num_threads(std::max(threads, 2));
  for (int64_t s = 1; s <= 3; ++s) accel::cpu_adam_step(o, s, {many.param, grad, many.exp_avg, many.exp_avg_sq});
  at::set_num_threads(threads);
  expect_equal(one.param, many.param, "param");
}

TEST(CpuAdam, BadTensorsAreNamed) {
  auto o = accel::CpuAdamOptions();
  auto f = [](int64_t n) { return torch::zeros({n}); };
  auto expect_refused = [&](const accel::CpuAdamSlice& s, const std::string& text, const accel::CpuAdamOptions& opt) {
    expect_error<std::invalid_argument>([&] { accel::cpu_adam_step(opt, 1, s); }, {text});
  };
  expect_refused({f(4), f(5), f(4), f(4)}, "grad has 5 elements, param has 4", o);
  expect_refused({f(4), f(4).to(torch::kHalf), f(4), f(4)}, "grad has dtype Half", o);
  expect_refused({f(4), f(4), f(4).to(torch::kDouble), f(4)}, "exp_avg has dtype Double", o);
  expect_refused({f(4), f(4), f(4), f(8)}, "exp_avg_sq has 8 elements", o);
  expect_refused({f(4), f(4), f(4), torch::zeros({2, 2}).t()}, "exp_avg_sq must be a dense contiguous", o);
  expect_refused({f(4), f(4), f(4), f(4)}, "max_exp_avg_sq is undefined", accel::CpuAdamOptions().amsgrad(true));
  expect_refused({f(4), f(4), f(4), f(4)}, "betas[1] = 1.000000, expected in [0, 1)",
                 accel::CpuAdamOptions().betas({0.9, 1.0}));
  EXPECT_THROW(accel::cpu_adam_step(o, 0, {f(4), f(4), f(4), f(4)}), std::invalid_argument);
  // LibTorch-style optimizer: a non-fp32 parameter is named by its index.
  auto p = torch::zeros({3}, torch::kDouble).requires_grad_();
  p.mutable_grad() = torch::ones({3}, torch::kDouble);
  accel::CpuAdamW opt({torch::zeros({2}), p}, torch::optim::AdamWOptions());
  expect_error<std::invalid_argument>([&] { opt.step(); },
                                      {"CpuAdamW: parameter 1 must be a contiguous fp32 CPU tensor"});
}

}  // namespace
