// Pipeline refusals and the runner's plumbing over Gloo: GPT-2 cut at a
// point inside a block or into more stages than blocks is refused naming
// it; the runner refuses inputs that do not match its schedule; the tied
// gradients are summed between the first and last stage; a stage's
// micro-batch gradients accumulate to the whole batch's.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/pipeline/runner.h"
#include "accel/parallel/pipeline/stage.h"
#include "accel/state.h"
#include "gpt2/model.h"
#include "gpt2/pipeline_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::invalid_argument";
  return {};
}

ProcessGroupPtr pp_group(int size) {
  ParallelismConfig c;
  c.pp_size = size;
  static std::unique_ptr<DeviceMesh> mesh;
  mesh = std::make_unique<DeviceMesh>(state(), c);
  return mesh->group("pp");
}

}  // namespace

TEST(PipelineParallelCut, GPT2CutInsideABlockIsRefusedNamingIt) {
  run_distributed(2, [] {
    gpt2::GPT2 model(gpt2::named_config("tiny"));
    auto pp = pp_group(2);
    const auto msg = message_of([&] { gpt2::pipeline_stage(model, pp, {"transformer.h.1.attn"}); });
    EXPECT_NE(msg.find("'transformer.h.1.attn' is inside unit 'transformer.h.1' (GPT2Block)"), std::string::npos)
        << msg;
    const auto none = message_of([&] { gpt2::pipeline_stage(model, pp, {"transformer.ln_f"}); });
    EXPECT_NE(none.find("'transformer.ln_f' is not a unit of the model; its units are: transformer.h.0, "
                        "transformer.h.1"),
              std::string::npos)
        << none;
    const auto first = message_of([&] { gpt2::pipeline_stage(model, pp, {"transformer.h.0"}); });
    EXPECT_NE(first.find("leaves the stage before it no unit"), std::string::npos) << first;
    // Refused before anything changed: the model is whole, and a good cut works.
    for (const auto& p : model->parameters()) EXPECT_GT(p.numel(), 0);
    auto stage = gpt2::pipeline_stage(model, pp, {"transformer.h.1"});
    EXPECT_EQ(stage.index, state().rank());
  });
}

TEST(PipelineParallelCut, GPT2MoreStagesThanBlocksIsRefused) {
  run_distributed(3, [] {
    gpt2::GPT2 model(gpt2::named_config("tiny"));
    auto pp = pp_group(3);
    const auto msg = message_of([&] { gpt2::pipeline_stage(model, pp); });
    EXPECT_NE(msg.find("3 stages for a model of 2 units"), std::string::npos) << msg;
  });
}

TEST(PipelineParallelCut, RunnerRefusesInputsThatDoNotMatchTheSchedule) {
  run_distributed(2, [] {
    PipelineStage stage(pp_group(2));
    stage.forward = [](const torch::Tensor& x) { return x * 2; };
    stage.loss = [](const torch::Tensor& y, const torch::Tensor& t) { return (y - t).pow(2).mean(); };
    const auto two = split_microbatches(torch::ones({4, 3}), 2);
    const auto msg = message_of([&] {
      run_pipeline(stage, PipelineScheduleKind::gpipe, 4, two, two);  // refused before any transfer
    });
    const std::string want = stage.is_first() ? "the first stage got 2 inputs for a schedule of 4 micro-batches"
                                              : "the last stage got 2 targets for a schedule of 4 micro-batches";
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
    const auto order = message_of([&] {
      run_pipeline(stage, {{PipelineAction::Kind::backward, 0}, {PipelineAction::Kind::forward, 0}}, two, two);
    });
    EXPECT_NE(order.find("B0 runs micro-batch 0 backward before its forward"), std::string::npos) << order;
    const auto split = message_of([&] { split_microbatches(torch::ones({5, 3}), 2); });
    EXPECT_NE(split.find("a batch of 5 rows does not divide into 2"), std::string::npos) << split;
  });
}

// Two stages of a linear model y = (x W1) W2 with a tied vector added on
// both ends: the pipeline's gradients (4 micro-batches, 1F1B) equal the
// whole batch's in float64, and the tied gradients are the sum of the two uses.
TEST(PipelineParallelCut, MicroBatchGradientsAccumulateToTheBatchAndTiedOnesAreSummed) {
  run_distributed(2, [] {
    torch::Tensor x, target, w1, w2, tied;
    {
      auto g = at::detail::createCPUGenerator(5);
      auto opts = torch::TensorOptions().dtype(torch::kDouble);
      x = torch::randn({8, 3}, g, opts);
      target = torch::randn({8, 2}, g, opts);
      w1 = torch::randn({3, 4}, g, opts);
      w2 = torch::randn({4, 2}, g, opts);
      tied = torch::randn({2}, g, opts);
    }
    // The reference: the whole batch in one piece; tied used as x[:, :2] + tied at the
    // input (first stage) and y + tied at the output (last stage).
    auto rw1 = w1.clone().requires_grad_(), rw2 = w2.clone().requires_grad_(), rt = tied.clone().requires_grad_();
    auto in = torch::cat({x.narrow(1, 0, 2) + rt, x.narrow(1, 2, 1)}, 1);
    auto ref_loss = ((in.mm(rw1)).mm(rw2) + rt - target).pow(2).mean();
    ref_loss.backward();

    PipelineStage stage(pp_group(2));
    auto mine = (stage.is_first() ? w1 : w2).clone().requires_grad_();
    auto t = tied.clone().requires_grad_();
    if (stage.is_first()) {
      stage.forward = [&](const torch::Tensor& xs) {
        return torch::cat({xs.narrow(1, 0, 2) + t, xs.narrow(1, 2, 1)}, 1).mm(mine);
      };
    } else {
      stage.forward = [&](const torch::Tensor& h) { return h.mm(mine) + t; };
      stage.loss = [](const torch::Tensor& y, const torch::Tensor& tg) { return (y - tg).pow(2).mean(); };
    }
    stage.parameters = {mine, t};
    stage.tied = {t};
    stage.tied_stage = 1 - stage.index;
    auto loss = run_pipeline(stage, PipelineScheduleKind::one_f_one_b, 4, split_microbatches(x, 4),
                             split_microbatches(target, 4));
    EXPECT_NEAR(loss.item<double>(), ref_loss.item<double>(), 1e-12);
    EXPECT_LT(max_diff(mine.grad(), (stage.is_first() ? rw1 : rw2).grad()), 1e-12);
    sum_tied_gradients(stage);
    EXPECT_LT(max_diff(t.grad(), rt.grad()), 1e-12);
    // The tied copy counts once in the norm: on the first stage only.
    auto grads = stage_gradients(stage);
    EXPECT_EQ(grads.counted.replicated.size(), stage.is_first() ? 2u : 1u);
    EXPECT_EQ(grads.uncounted.size(), stage.is_first() ? 0u : 1u);
  });
}
