// Whole-step CUDA-graph capture on the GPU (label gpu): a captured step
// equals the eager step over 10 steps (fp32 within 1e-6, the lr following
// a schedule, clipping on), the host's step counts keep up with the
// replays, and what cannot be captured is refused with the reason.
#include <optional>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/optim/schedules.h"
#include "support/cuda.h"
#include "support/errors.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::expect_close;
using accel::testing::expect_error;
namespace F = torch::nn::functional;

namespace {

torch::nn::Sequential make_net() {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(16, 64), torch::nn::GELU(),
                               torch::nn::LayerNorm(torch::nn::LayerNormOptions({64})), torch::nn::Linear(64, 5));
}

struct Trained {
  std::vector<torch::Tensor> params;
  std::vector<double> losses;
  int64_t host_steps = 0;
  bool captured = false;
};

Trained train(bool cuda_graph, const std::string& precision) {
  Accelerator acc(AcceleratorOptions().cuda_graph(cuda_graph).mixed_precision(precision));
  auto net = make_net();
  auto adamw =
      std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  auto sched = get_scheduler("cosine", *adamw, 3, 10);
  auto [model, optimizer, scheduler] = acc.prepare(net, adamw, sched);
  auto step = acc.capture_step([&](const std::vector<torch::Tensor>& in) {
    auto loss = F::cross_entropy(model(in[0]), in[1]);
    acc.backward(loss);
    acc.clip_grad_norm_(net->parameters(), 0.5);
    optimizer->step();
    optimizer->zero_grad();
    return std::vector<torch::Tensor>{loss.detach()};
  });
  auto g = at::detail::createCPUGenerator(7);
  Trained t;
  for (int s = 0; s < 10; ++s) {
    auto x = torch::randn({32, 16}, g).cuda();
    auto y = torch::randint(0, 5, {32}, g).cuda();
    t.losses.push_back(step({x, y})[0].item<double>());
    scheduler->step();
  }
  for (auto& p : net->parameters()) t.params.push_back(p.detach().cpu());
  const auto& state = optimizer->optimizer().state();
  t.host_steps =
      static_cast<torch::optim::AdamWParamState&>(*state.at(net->parameters()[0].unsafeGetTensorImpl())).step();
  t.captured = step.captured();
  return t;
}

}  // namespace

TEST(CapturedStepGpu, CapturedStepEqualsEagerStep) {
  REQUIRE_CUDA();
  for (const std::string precision : {"no", "bf16"}) {
    auto eager = train(false, precision);
    auto graph = train(true, precision);
    EXPECT_FALSE(eager.captured);
    EXPECT_TRUE(graph.captured) << precision;
    EXPECT_EQ(graph.host_steps, 10) << precision;
    const double tol = precision == "no" ? 1e-6 : 1e-3;
    for (size_t s = 0; s < eager.losses.size(); ++s)
      EXPECT_NEAR(graph.losses[s], eager.losses[s], tol) << precision << " step " << s;
    SCOPED_TRACE(precision);
    expect_close(graph.params, eager.params, tol);
  }
}

TEST(CapturedStepGpu, WhatCannotBeCapturedIsRefusedWithTheReason) {
  REQUIRE_CUDA();
  {  // reading a value back inside the step
    Accelerator acc(AcceleratorOptions().cuda_graph(true));
    auto net = make_net();
    auto [model, optimizer] = acc.prepare(net, std::make_shared<torch::optim::AdamW>(net->parameters()));
    auto step = acc.capture_step(
        [&](const std::vector<torch::Tensor>& in) {
          auto loss = model(in[0]).pow(2).mean();
          acc.backward(loss);
          if (loss.item<double>() > 1e9) throw std::logic_error("unreachable");
          optimizer->step();
          optimizer->zero_grad();
          return std::vector<torch::Tensor>{loss};
        },
        CaptureOptions().warmup_steps(1));
    auto x = torch::randn({4, 16}, torch::kCUDA);
    step({x});  // the warm-up call runs eagerly
    // Another shape than the first call's.
    expect_error([&] { step({torch::randn({5, 16}, torch::kCUDA)}); }, {"expected [4, 16] Float"});
    expect_error([&] { step({x}); }, {"cannot be captured"});
  }
  {  // fp16: the loss scaler decides on the host
    Accelerator acc(AcceleratorOptions().cuda_graph(true).mixed_precision("fp16"));
    auto net = make_net();
    auto [model, optimizer] = acc.prepare(net, std::make_shared<torch::optim::AdamW>(net->parameters()));
    auto step = acc.capture_step([&](const std::vector<torch::Tensor>& in) { return in; });
    expect_error([&] { step({torch::randn({4, 16}, torch::kCUDA)}); }, {"fp16 loss scaling"});
  }
  expect_error(
      [] {
        Accelerator(AcceleratorOptions().cuda_graph(true).gradient_accumulation_steps(2))
            .capture_step([](const std::vector<torch::Tensor>& in) { return in; });
      },
      {"gradient_accumulation_steps is 2"});
}

// Accelerator::can_capture_step says where capture_step can record, and
// CaptureOptions::cuda_graph turns recording on or off for one step in
// place of AcceleratorOptions::cuda_graph (the GPT-2 example's default).
TEST(CapturedStepGpu, CaptureOptionsDecideInPlaceOfTheAcceleratorOption) {
  REQUIRE_CUDA();
  auto train = [](Accelerator& acc, std::optional<bool> cuda_graph) {
    auto net = make_net();
    auto [model, optimizer] = acc.prepare(net, std::make_shared<torch::optim::AdamW>(net->parameters()));
    EXPECT_TRUE(acc.can_capture_step());
    auto step = acc.capture_step(
        [&](const std::vector<torch::Tensor>& in) {
          auto loss = model(in[0]).pow(2).mean();
          acc.backward(loss);
          optimizer->step();
          optimizer->zero_grad();
          return std::vector<torch::Tensor>{loss.detach()};
        },
        CaptureOptions().warmup_steps(1).cuda_graph(cuda_graph));
    for (int i = 0; i < 3; ++i) step({torch::randn({4, 16}, torch::kCUDA)});
    return step.captured();
  };
  {
    Accelerator acc(AcceleratorOptions().cuda_graph(false));
    EXPECT_TRUE(train(acc, true));
  }
  {
    Accelerator acc(AcceleratorOptions().cuda_graph(true));
    EXPECT_FALSE(train(acc, false));
  }
  {
    Accelerator acc(AcceleratorOptions().cuda_graph(true));
    EXPECT_TRUE(train(acc, std::nullopt));
  }
  EXPECT_FALSE(Accelerator(AcceleratorOptions().mixed_precision("fp16")).can_capture_step());
  EXPECT_FALSE(Accelerator(AcceleratorOptions().gradient_accumulation_steps(2)).can_capture_step());
}
