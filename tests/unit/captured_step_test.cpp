// CapturedStep's eager path (what runs on a CPU, or with cuda_graph off):
// each call is one batch of the gradient state and returns what the step
// function returns, so a program written around capture_step trains the
// same without a GPU; and its arguments are checked. The captured path is
// tested on the GPU (tests/gpu/captured_step_gpu_test.cpp).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/graph/captured_step.h"
#include "support/errors.h"

using accel::CapturedStep;
using accel::testing::expect_error;

TEST(CapturedStep, EagerPathRunsTheStepAndAdvancesTheGradientState) {
  auto state = std::make_shared<accel::GradientState>(accel::GradientAccumulationPlugin().num_steps(2));
  auto w = torch::zeros({3}, torch::requires_grad());
  auto opt = std::make_shared<accel::AcceleratedOptimizer>(
      std::make_shared<torch::optim::SGD>(std::vector<torch::Tensor>{w}, torch::optim::SGDOptions(0.5)), state);
  std::vector<bool> syncs;
  CapturedStep step(
      [&](const std::vector<torch::Tensor>& in) {
        syncs.push_back(state->sync_gradients());
        auto loss = (w * in[0]).sum();
        loss.backward();
        opt->step();
        opt->zero_grad();
        return std::vector<torch::Tensor>{loss.detach()};
      },
      {opt}, state, /*capture=*/false);
  for (int i = 0; i < 4; ++i) {
    auto out = step({torch::full({3}, 1.0 + i)});
    ASSERT_EQ(out.size(), 1u);
  }
  EXPECT_EQ(step.calls(), 4);
  EXPECT_FALSE(step.captured());
  EXPECT_EQ(syncs, (std::vector<bool>{false, true, false, true}));
  // Gradients 1+2 summed, then 3+4: w = -0.5 * (3 + 7).
  EXPECT_TRUE(torch::allclose(w.detach(), torch::full({3}, -5.0)));
}

TEST(CapturedStep, ArgumentsAreChecked) {
  auto state = std::make_shared<accel::GradientState>();
  auto fn = [](const std::vector<torch::Tensor>& in) { return in; };
  EXPECT_THROW(CapturedStep(nullptr, {}, state, false), std::invalid_argument);
  EXPECT_THROW(CapturedStep(fn, {}, nullptr, false), std::invalid_argument);
  expect_error<std::invalid_argument>(
      [&] { CapturedStep(fn, {}, state, false, accel::CaptureOptions().warmup_steps(0)); }, {"warmup_steps is 0"});
}

// Accelerator::can_capture_step and CaptureOptions::cuda_graph on a CPU:
// nothing can be captured there, and asking for it per step still runs the
// step eagerly (the program does not change without a GPU).
TEST(CapturedStep, OnACpuNothingCanBeCapturedAndAskingRunsEagerly) {
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true));
  EXPECT_FALSE(acc.can_capture_step());
  int calls = 0;
  auto step = acc.capture_step(
      [&](const std::vector<torch::Tensor>& in) {
        ++calls;
        return in;
      },
      accel::CaptureOptions().cuda_graph(true).warmup_steps(1));
  for (int i = 0; i < 3; ++i) step({torch::ones({2})});
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(step.captured());
}
