// `model->forward(x)` on a prepared model reaches the user's module and so
// skips DDP's reducer and autocast; the backward that follows must fail,
// saying what to call, instead of training each rank on its own gradients.
// 2 ranks over Gloo; a plain LibTorch step on the full batch is the reference.
#include <gtest/gtest.h>

#include <source_location>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "support/distributed.h"
#include "support/errors.h"

using namespace accel;
using accel::testing::expect_error;
using accel::testing::seed_cpu;
namespace F = torch::nn::functional;

namespace {

torch::nn::Sequential make_net() {
  seed_cpu(3);
  return torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::Tanh(), torch::nn::Linear(8, 2));
}

// 8 rows; rank r takes rows [4r, 4r+4).
torch::Tensor all_x() { return torch::randn({8, 4}, at::detail::createCPUGenerator(5)); }
torch::Tensor all_y() { return torch::randint(0, 2, {8}, at::detail::createCPUGenerator(6)); }

// `step` (a backward after model->forward(x)) fails, saying what to call
// and `what` the bypass skipped.
void expect_bypass_error(const std::function<void()>& step, const std::string& what,
                         std::source_location where = std::source_location::current()) {
  expect_error(step, {"model->forward(x)", "model(x)", what}, where);
}

}  // namespace

TEST(ForwardCheck, DdpBackwardAfterArrowForwardFailsThenTheWrapperTrainsAsOneBatch) {
  accel::testing::run_distributed(2, [] {
    // The reference: one plain SGD step on all 8 rows.
    auto ref = make_net();
    torch::optim::SGD ref_opt(ref->parameters(), 0.5);
    F::cross_entropy(ref->forward(all_x()), all_y()).backward();
    ref_opt.step();

    Accelerator acc;
    auto net = make_net();
    auto sgd = std::make_shared<torch::optim::SGD>(net->parameters(), 0.5);
    // Not a structured binding: the lambdas below capture these.
    auto prepared = acc.prepare(net, sgd);
    auto& model = std::get<0>(prepared);
    auto& opt = std::get<1>(prepared);
    const int r = acc.process_index();
    auto x = all_x().narrow(0, 4 * r, 4), y = all_y().narrow(0, 4 * r, 4);

    expect_bypass_error([&] { acc.backward(F::cross_entropy(model->forward(x), y)); }, "DDP's gradient all-reduce");
    opt->zero_grad();
    // A plain loss.backward() is caught too, not only Accelerator::backward.
    expect_bypass_error([&] { F::cross_entropy(model->forward(x), y).backward(); }, "all-reduce");
    opt->zero_grad();

    // Through the wrapper: the averaged gradient, so the full-batch step.
    acc.backward(F::cross_entropy(model(x), y));
    opt->step();
    auto got = net->parameters(), want = ref->parameters();
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-5, 1e-6)) << "param " << i;

    // Each forward allows one backward: a second bypass after a good step fails again.
    opt->zero_grad();
    expect_bypass_error([&] { acc.backward(F::cross_entropy(model->forward(x), y)); }, "all-reduce");
    // Members stay reachable through ->, and an evaluation forward is fine.
    torch::NoGradGuard no_grad;
    EXPECT_EQ(model->size(), 3u);
    EXPECT_EQ(model->forward(x).size(0), 4);
  });
}

TEST(ForwardCheck, MixedPrecisionBackwardAfterArrowForwardFails) {
  // bf16 autocast is skipped by -> even in one process; on 2 ranks both apply.
  for (int ranks : {1, 2}) {
    accel::testing::run_distributed(ranks, [] {
      Accelerator acc(AcceleratorOptions().mixed_precision("bf16"));
      auto net = make_net();
      auto prepared = acc.prepare(net, std::make_shared<torch::optim::SGD>(net->parameters(), 0.1));
      auto& model = std::get<0>(prepared);
      auto& opt = std::get<1>(prepared);
      auto x = all_x(), y = all_y();
      expect_bypass_error([&] { acc.backward(F::cross_entropy(model->forward(x), y)); }, "bf16 autocast");
      opt->zero_grad();
      auto out = model(x);
      EXPECT_EQ(out.scalar_type(), torch::kFloat);  // computed in bf16, returned in fp32
      acc.backward(F::cross_entropy(out, y), /*retain_graph=*/true);
      for (auto& p : model.module()->parameters()) EXPECT_TRUE(p.grad().defined());
      // In one process a second backward through the same forward is allowed
      // (under DDP it is an error anyway).
      if (acc.num_processes() == 1) acc.backward(F::cross_entropy(out, y));
    });
  }
}

TEST(ForwardCheck, OneProcessInFp32HasNothingToBypass) {
  accel::testing::run_distributed(1, [] {
    Accelerator acc;
    auto net = make_net();
    auto model = acc.prepare(net);
    F::cross_entropy(model->forward(all_x()), all_y()).backward();  // the same as model(x) here
    for (auto& p : net->parameters()) EXPECT_TRUE(p.grad().defined());
  });
}
