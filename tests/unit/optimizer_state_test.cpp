// Optimizer state through files (safetensors + JSON): an optimizer trained
// a few steps, saved, loaded into a new optimizer over copies of the
// parameters, and both trained on: bit-identical, for every known family;
// and each malformed or mismatched state refused without touching the
// optimizer.
#include <filesystem>
#include <functional>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/checkpoint/optimizer_state.h"
#include "accel/optim/fused_adamw.h"
#include "support/errors.h"
#include "support/temp_dir.h"

using namespace accel;
namespace fs = std::filesystem;
using accel::testing::expect_error;
using accel::testing::TempDir;

namespace {

using Params = std::vector<torch::Tensor>;
using MakeOpt = std::function<std::unique_ptr<torch::optim::Optimizer>(const Params& a, const Params& b)>;

Params fresh_params() {
  auto g = at::detail::createCPUGenerator(3);
  return {torch::randn({5, 4}, g).requires_grad_(), torch::randn({4}, g).requires_grad_(),
          torch::randn({4, 2}, g).requires_grad_()};
}

Params copy_of(const Params& ps) {
  Params out;
  for (auto& p : ps) out.push_back(p.detach().clone().requires_grad_());
  return out;
}

void train(torch::optim::Optimizer& opt, const Params& p, int steps, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    auto x = torch::randn({3, 5}, g);
    auto h = torch::tanh(x.matmul(p[0]) + p[1]);
    (s % 2 ? h.pow(2).sum() : h.matmul(p[2]).pow(2).sum()).backward();  // p[2] idle on odd steps
    opt.step();
  }
}

// Two param groups: the first over p[0], p[1], the second over p[2].
template <class Opt, class Options>
MakeOpt two_groups(Options first, Options second) {
  return [=](const Params& a, const Params&) {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(Params{a[0], a[1]}, std::make_unique<Options>(first));
    groups.emplace_back(Params{a[2]}, std::make_unique<Options>(second));
    return std::make_unique<Opt>(groups, first);
  };
}

void expect_round_trip(const MakeOpt& make) {
  auto p = fresh_params();
  auto opt = make(p, {});
  train(*opt, p, 3, 1);
  auto saved = optimizer_state(*opt);
  const TempDir dir("opt_state");
  const fs::path file = dir / "state.safetensors";
  safetensors::save_file(saved.tensors, file);

  auto q = copy_of(p);
  auto loaded = make(q, {});
  load_optimizer_state(*loaded, safetensors::load_file(file), saved.json, file.string());
  train(*opt, p, 4, 2);
  train(*loaded, q, 4, 2);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_TRUE(torch::equal(p[i], q[i])) << "parameter " << i;
  EXPECT_EQ(optimizer_state(*loaded).json, optimizer_state(*opt).json);
}

safetensors::OrderedTensors as_dict(const safetensors::NamedTensors& tensors) {
  safetensors::OrderedTensors out;
  for (const auto& [name, t] : tensors) out.insert(name, t);
  return out;
}

}  // namespace

TEST(OptimizerState, AdamWRoundTrip) {
  using O = torch::optim::AdamWOptions;
  expect_round_trip(two_groups<torch::optim::AdamW>(O(1e-2).amsgrad(true), O(3e-3).weight_decay(0.2)));
}
TEST(OptimizerState, AdamRoundTrip) {
  using O = torch::optim::AdamOptions;
  expect_round_trip(two_groups<torch::optim::Adam>(O(1e-2).betas({0.8, 0.9}), O(5e-3)));
}
TEST(OptimizerState, SgdRoundTrip) {
  using O = torch::optim::SGDOptions;
  expect_round_trip(two_groups<torch::optim::SGD>(O(0.1).momentum(0.9).nesterov(true), O(0.05).momentum(0.5)));
}
TEST(OptimizerState, RmspropRoundTrip) {
  using O = torch::optim::RMSpropOptions;
  expect_round_trip(two_groups<torch::optim::RMSprop>(O(1e-2).centered(true).momentum(0.5), O(2e-2)));
}
TEST(OptimizerState, AdagradRoundTrip) {
  using O = torch::optim::AdagradOptions;
  expect_round_trip(two_groups<torch::optim::Adagrad>(O(0.1).lr_decay(0.01), O(0.05)));
}

TEST(OptimizerState, FusedAdamWAndAdamWShareTheirState) {
  auto p = fresh_params();
  torch::optim::AdamW plain(p, torch::optim::AdamWOptions(1e-2));
  train(plain, p, 2, 1);
  auto saved = optimizer_state(plain);
  auto tensors = as_dict(saved.tensors);
  auto q = copy_of(p);
  FusedAdamW fused(q, torch::optim::AdamWOptions(1e-2));
  load_optimizer_state(fused, tensors, saved.json, "memory");
  EXPECT_EQ(optimizer_state(fused).json, saved.json);
}

TEST(OptimizerState, HyperParametersAndLrAreRestored) {
  auto p = fresh_params();
  torch::optim::SGD a(p, torch::optim::SGDOptions(0.3).momentum(0.7));
  auto saved = optimizer_state(a);
  torch::optim::SGD b(copy_of(p), torch::optim::SGDOptions(0.01));
  safetensors::OrderedTensors none;
  load_optimizer_state(b, none, saved.json, "memory");
  auto& o = static_cast<torch::optim::SGDOptions&>(b.param_groups()[0].options());
  EXPECT_EQ(o.lr(), 0.3);
  EXPECT_EQ(o.momentum(), 0.7);
}

TEST(OptimizerState, MismatchesAreRefusedAndChangeNothing) {
  auto p = fresh_params();
  torch::optim::Adam adam(p, torch::optim::AdamOptions(1e-2));
  train(adam, p, 2, 1);
  auto saved = optimizer_state(adam);
  auto tensors = as_dict(saved.tensors);

  torch::optim::AdamW adamw(copy_of(p), torch::optim::AdamWOptions(1e-2));
  expect_error([&] { load_optimizer_state(adamw, tensors, saved.json, "f"); },
               {"holds a Adam state, the optimizer is a AdamW"});

  torch::optim::Adam fewer(Params{p[0], p[1]}, torch::optim::AdamOptions(0.5));
  expect_error([&] { load_optimizer_state(fewer, tensors, saved.json, "f"); },
               {"3 parameters saved, the optimizer's has 2"});
  EXPECT_EQ(fewer.param_groups()[0].options().get_lr(), 0.5) << "a refused load changed the options";

  Params other_shapes = {torch::zeros({5, 4}, torch::requires_grad()), torch::zeros({7}, torch::requires_grad()),
                         torch::zeros({4, 2}, torch::requires_grad())};
  torch::optim::Adam reshaped(other_shapes, torch::optim::AdamOptions(0.5));
  expect_error([&] { load_optimizer_state(reshaped, tensors, saved.json, "f"); },
               {"'state.1.exp_avg' in f is [4] Float"});
  EXPECT_TRUE(reshaped.state().empty());

  safetensors::OrderedTensors missing;
  for (auto& [name, t] : saved.tensors)
    if (name != "state.0.exp_avg_sq") missing.insert(name, t);
  torch::optim::Adam fresh(copy_of(p), torch::optim::AdamOptions(1e-2));
  expect_error([&] { load_optimizer_state(fresh, missing, saved.json, "f"); }, {"'state.0.exp_avg_sq' is missing"});
  expect_error([&] { load_optimizer_state(fresh, tensors, "{not json", "f"); }, {"not valid JSON"});
  expect_error([&] { load_optimizer_state(fresh, tensors, "{\"format\":\"x\"}", "f"); },
               {"not an accel optimizer state"});
  EXPECT_TRUE(fresh.state().empty());

  auto x = torch::zeros({2}, torch::requires_grad());
  torch::optim::LBFGS lbfgs(Params{x});
  expect_error([&] { optimizer_state(lbfgs); }, {"cannot save or load an optimizer of type"});
}
