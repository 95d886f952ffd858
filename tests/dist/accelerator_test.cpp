// The Accelerator, end to end on 2 CPU ranks over Gloo, checked against a
// plain LibTorch loop in one process on the same samples (the reference is
// computed inside each rank, without accel).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/data/data_loader.h"
#include "accel/optim/schedules.h"
#include "accel/parallel/local_sgd.h"
#include "support/classifier.h"
#include "support/distributed.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

using namespace accel;
namespace classifier = accel::testing::classifier;
using accel::testing::expect_ranks_agree;
using accel::testing::max_diff;
using accel::testing::seed_cpu;
using accel::testing::snapshot;
using accel::testing::TempDir;
namespace F = torch::nn::functional;

namespace {

using Net = classifier::Net<{.branch = true}>;
constexpr int64_t kSamples = 48;

// The reference: one process, plain LibTorch, `rows` consecutive samples per
// optimizer step (the union of what the ranks and micro-batches saw), with
// the same schedule stepped `sched_per_step` times per step and clipping.
struct Reference {
  std::vector<torch::Tensor> params;
  std::vector<double> lrs;
  std::vector<double> norms;
};
Reference reference(int64_t rows, int sched_per_step, double clip, int64_t steps, bool idle_branch = false) {
  seed_cpu(7);
  Net net;
  auto opt = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(0.01));
  auto sched = get_scheduler(SchedulerType::linear, *opt, 2, 40);
  auto x = classifier::features(kSamples), y = classifier::labels(kSamples);
  Reference r;
  for (int64_t s = 0; s < steps; ++s) {
    opt->zero_grad();
    auto loss =
        F::cross_entropy(net(x.narrow(0, s * rows, rows), !idle_branch || s % 2 == 0), y.narrow(0, s * rows, rows));
    loss.backward();
    if (clip > 0) r.norms.push_back(torch::nn::utils::clip_grad_norm_(net->parameters(), clip));
    opt->step();
    for (int i = 0; i < sched_per_step; ++i) sched->step();
    r.lrs.push_back(sched->get_last_lr()[0]);
  }
  r.params = snapshot(*net);
  return r;
}

// Trains with the Accelerator over a prepared loader of `batch` rows per rank.
struct Run {
  std::vector<torch::Tensor> params;
  std::vector<double> lrs;
  std::vector<double> norms;
};
Run train(Accelerator& acc, int64_t batch, double clip, bool idle_branch = false) {
  seed_cpu(7 + 100 * acc.process_index());  // prepare must broadcast rank 0's weights
  Net net;
  auto opt = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(0.01));
  auto sched = get_scheduler(SchedulerType::linear, *opt, 2, 40);
  auto [model, optimizer, scheduler, data] = acc.prepare(net, opt, sched, classifier::loader(kSamples, batch));
  Run r;
  int64_t batches = 0;
  for (auto& b : data) {
    auto scope = acc.accumulate(model);
    const int64_t step = batches++ / acc.gradient_accumulation_steps();
    auto loss = F::cross_entropy(model(b["x"], !idle_branch || step % 2 == 0), b["y"]);
    acc.backward(loss);
    if (acc.sync_gradients() && clip > 0)
      r.norms.push_back(acc.clip_grad_norm_(net->parameters(), clip).item<double>());
    optimizer->step();
    scheduler->step();
    optimizer->zero_grad();
    if (acc.sync_gradients()) r.lrs.push_back(scheduler->get_last_lr()[0]);
  }
  r.params = snapshot(*net);
  return r;
}

void expect_same_training(const Run& run, const Reference& ref) {
  EXPECT_LT(max_diff(run.params, ref.params), 1e-5);
  ASSERT_EQ(run.lrs.size(), ref.lrs.size());
  for (size_t i = 0; i < ref.lrs.size(); ++i) EXPECT_DOUBLE_EQ(run.lrs[i], ref.lrs[i]) << "step " << i;
  ASSERT_EQ(run.norms.size(), ref.norms.size());
  for (size_t i = 0; i < ref.norms.size(); ++i) EXPECT_NEAR(run.norms[i], ref.norms[i], 1e-5) << "step " << i;
}

}  // namespace

TEST(Accelerator, DdpEqualsSingleProcessFullBatch) {
  // 2 ranks x 4 rows = 8 rows per step; 6 steps; scheduler stepped twice per step.
  // The reference runs in each rank: autograd used in the parent before
  // fork (with CUDA present) breaks autograd in the children.
  accel::testing::run_distributed(2, [&] {
    auto ref = reference(8, 2, 0.0, 6);
    Accelerator acc;
    auto run = train(acc, 4, 0.0);
    expect_same_training(run, ref);
    expect_ranks_agree(run.params);
  });
}

TEST(Accelerator, AccumulationWithDdpEqualsFullBatch) {
  // 2 ranks x 2 micro-batches x 3 rows = 12 rows per step, 4 steps.
  // The reference runs in each rank: autograd used in the parent before
  // fork (with CUDA present) breaks autograd in the children.
  accel::testing::run_distributed(2, [&] {
    auto ref = reference(12, 2, 0.0, 4);
    Accelerator acc(AcceleratorOptions().gradient_accumulation_steps(2));
    auto run = train(acc, 3, 0.0);
    expect_same_training(run, ref);
  });
}

TEST(Accelerator, AccumulationInOneProcessEqualsFullBatch) {
  // 4 micro-batches of 3 rows = one step of 12.
  // The reference runs in each rank: autograd used in the parent before
  // fork (with CUDA present) breaks autograd in the children.
  accel::testing::run_distributed(1, [&] {
    auto ref = reference(12, 1, 0.0, 4);
    Accelerator acc(AcceleratorOptions().gradient_accumulation_steps(4));
    auto run = train(acc, 3, 0.0);
    expect_same_training(run, ref);
  });
}

TEST(Accelerator, ClipGradNormIsTheSingleProcessNorm) {
  // The reference runs in each rank: autograd used in the parent before
  // fork (with CUDA present) breaks autograd in the children.
  accel::testing::run_distributed(2, [&] {
    auto ref = reference(8, 2, 0.05, 6);
    Accelerator acc;
    auto run = train(acc, 4, 0.05);
    ASSERT_FALSE(run.norms.empty());
    EXPECT_GT(run.norms[0], 0.05);  // clipping really happened
    expect_same_training(run, ref);
  });
}

TEST(Accelerator, FindUnusedParametersKeepsRanksInSync) {
  // The reference runs in each rank: autograd used in the parent before
  // fork (with CUDA present) breaks autograd in the children.
  accel::testing::run_distributed(2, [&] {
    auto ref = reference(8, 2, 0.0, 6, /*idle_branch=*/true);
    Accelerator acc(AcceleratorOptions().ddp(DDPOptions().find_unused_parameters(true)));
    auto run = train(acc, 4, 0.0, /*idle_branch=*/true);
    expect_same_training(run, ref);
    expect_ranks_agree(run.params);
  });
}

TEST(Accelerator, SchedulerStepsOncePerOptimizerStepWithSplitBatches) {
  // split_batches: each rank gets half of every 8-row batch; one scheduler step per optimizer step.
  // The reference runs in each rank: autograd used in the parent before
  // fork (with CUDA present) breaks autograd in the children.
  accel::testing::run_distributed(2, [&] {
    auto ref = reference(8, 1, 0.0, 6);
    Accelerator acc(AcceleratorOptions().split_batches(true));
    auto run = train(acc, 8, 0.0);
    expect_same_training(run, ref);
  });
}

TEST(Accelerator, OptimizerAndSchedulerIdleOnAccumulationBatches) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc(AcceleratorOptions().gradient_accumulation_steps(3));
    seed_cpu(1);
    Net net;
    auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
    auto sched = get_scheduler(SchedulerType::linear, *opt, 0, 100);
    auto [model, optimizer, scheduler] = acc.prepare(net, opt, sched);
    auto x = classifier::features(kSamples).narrow(0, 0, 4), y = classifier::labels(kSamples).narrow(0, 0, 4);
    for (int i = 1; i <= 6; ++i) {
      auto scope = acc.accumulate(model);
      auto before = snapshot(*net);
      acc.backward(F::cross_entropy(model(x), y));
      auto grad = net->fc1->weight.grad().clone();
      optimizer->step();
      scheduler->step();
      optimizer->zero_grad();
      const bool sync = i % 3 == 0;
      EXPECT_EQ(acc.sync_gradients(), sync) << "batch " << i;
      EXPECT_EQ(max_diff(snapshot(*net), before) > 0, sync) << "batch " << i;
      // Gradients are kept (not zeroed) between accumulation batches.
      if (!sync) {
        EXPECT_TRUE(net->fc1->weight.grad().equal(grad));
      }
      EXPECT_EQ(scheduler->scheduler()->last_epoch(), 2 * (i / 3)) << "batch " << i;
    }
  });
}

TEST(Accelerator, Fp16OverflowOnOneRankSkipsTheStepEverywhere) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc(AcceleratorOptions().mixed_precision("fp16").scaler(GradScalerOptions().growth_interval(2)));
    ASSERT_NE(acc.scaler(), nullptr);
    seed_cpu(3);
    Net net;
    auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
    auto sched = get_scheduler(SchedulerType::constant, *opt, std::nullopt, std::nullopt);
    auto [model, optimizer, scheduler] = acc.prepare(net, opt, sched);
    auto x = classifier::features(kSamples).narrow(0, 4 * acc.process_index(), 4),
         y = classifier::labels(kSamples).narrow(0, 4 * acc.process_index(), 4);
    auto step = [&](bool poison) {
      auto out = model(x);
      EXPECT_EQ(out.scalar_type(), torch::kFloat);  // outputs come back in fp32
      acc.backward(F::cross_entropy(out, y));
      if (poison && acc.process_index() == 1) net->head->weight.grad()[0][0] = std::numeric_limits<float>::infinity();
      auto before = snapshot(*net);
      optimizer->step();
      scheduler->step();
      optimizer->zero_grad();
      return max_diff(snapshot(*net), before) > 0;
    };
    const double s0 = acc.scaler()->get_scale();
    EXPECT_EQ(s0, 65536.0);
    EXPECT_FALSE(step(true));
    EXPECT_TRUE(optimizer->step_was_skipped());
    EXPECT_EQ(acc.scaler()->get_scale(), s0 / 2);
    EXPECT_EQ(scheduler->scheduler()->last_epoch(), 0);  // no scheduler step after a skipped update
    EXPECT_TRUE(step(false));
    EXPECT_TRUE(step(false));
    EXPECT_FALSE(optimizer->step_was_skipped());
    EXPECT_EQ(acc.scaler()->get_scale(), s0);  // 2 good steps (growth_interval) double it
    EXPECT_EQ(scheduler->scheduler()->last_epoch(), 4);
    expect_ranks_agree(snapshot(*net));
  });
}

TEST(Accelerator, Bf16OnCpuTrainsBelowThreshold) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc(AcceleratorOptions().mixed_precision("bf16"));
    seed_cpu(5);
    // Two Gaussian blobs, separable: the loss must fall below 0.1.
    auto g = at::detail::createCPUGenerator(21);
    auto y = torch::randint(0, 2, {256}, g);
    auto x = torch::randn({256, 6}, g) * 0.5 + (y.unsqueeze(1).to(torch::kFloat) * 2 - 1);
    auto net = torch::nn::Sequential(torch::nn::Linear(6, 32), torch::nn::ReLU(), torch::nn::Linear(32, 2));
    auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(0.01));
    auto data = make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"x", x}, {"y", y}}),
                                 DataLoaderOptions(32).shuffle(true));
    auto [model, optimizer, loader] = acc.prepare(net, opt, data);
    double last = 0;
    for (int epoch = 0; epoch < 10; ++epoch)
      for (auto& b : loader) {
        auto out = model(b["x"]);
        auto loss = F::cross_entropy(out, b["y"]);
        acc.backward(loss);
        optimizer->step();
        optimizer->zero_grad();
        last = acc.reduce(loss.detach().reshape({1}), ReduceOp::mean).item<double>();
      }
    EXPECT_LT(last, 0.1);
  });
}

TEST(Accelerator, MasterWeightsKeepBf16ModelAndFp32Copies) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc(AcceleratorOptions().mixed_precision("bf16").master_weights(true));
    auto ref = reference(8, 2, 0.0, 6);
    seed_cpu(7);
    Net net;
    auto opt = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(0.01));
    auto sched = get_scheduler(SchedulerType::linear, *opt, 2, 40);
    auto [model, optimizer, scheduler, data] = acc.prepare(net, opt, sched, classifier::loader(kSamples, 4));
    for (auto& p : net->parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
    for (auto& group : optimizer->optimizer().param_groups())
      for (auto& p : group.params()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
    for (auto& b : data) {
      acc.backward(F::cross_entropy(model(b["x"]), b["y"]));
      acc.clip_grad_norm_(net->parameters(), 100.0);
      optimizer->step();
      scheduler->step();
      optimizer->zero_grad();
    }
    // The masters track fp32 training within bf16's precision; the model is
    // the masters rounded.
    auto masters = optimizer->master_weights()->masters();
    EXPECT_LT(max_diff(masters, ref.params), 0.05);
    auto model_params = snapshot(*net);
    for (size_t i = 0; i < masters.size(); ++i)
      EXPECT_TRUE(model_params[i].equal(masters[i].to(torch::kBFloat16).to(torch::kFloat)));
    expect_ranks_agree(model_params);
  });
}

TEST(Accelerator, LocalSgdAveragesAtEachSyncPoint) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc;
    seed_cpu(9);
    Net net;
    auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
    auto [model, optimizer] = acc.prepare(net, opt);
    // Each rank its own samples: without all-reduce the ranks drift apart.
    auto x = classifier::features(kSamples).narrow(0, 8 * acc.process_index(), 8),
         y = classifier::labels(kSamples).narrow(0, 8 * acc.process_index(), 8);
    {
      LocalSGD local_sgd(acc, model, 3);
      for (int i = 1; i <= 7; ++i) {
        acc.backward(F::cross_entropy(model(x), y));
        optimizer->step();
        optimizer->zero_grad();
        auto mine = snapshot(*net);
        // The mean of the ranks' parameters, computed here independently.
        std::vector<torch::Tensor> mean;
        for (auto& p : mine) mean.push_back(gather(p.unsqueeze(0)).mean(0));
        local_sgd.step();
        auto after = snapshot(*net);
        if (i % 3 == 0) {
          EXPECT_LT(max_diff(after, mean), 1e-6) << "step " << i;
        } else {
          EXPECT_GT(max_diff(mine, mean), 1e-6) << "ranks should differ between sync points, step " << i;
          EXPECT_EQ(max_diff(after, mine), 0.0);
        }
      }
    }
    // Leaving the scope averages once more.
    std::vector<torch::Tensor> mean;
    for (auto& p : snapshot(*net)) mean.push_back(gather(p.unsqueeze(0)).mean(0));
    EXPECT_LT(max_diff(snapshot(*net), mean), 1e-7);
    expect_ranks_agree(snapshot(*net));
  });
}

TEST(Accelerator, GatherForMetricsReturnsEachSampleOnce) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc;
    // 10 samples, batch 4 per rank: the last round repeats samples to stay even.
    auto ids = torch::arange(10).to(torch::kFloat).unsqueeze(1);
    auto data = make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"id", ids}}), DataLoaderOptions(4));
    auto prepared = acc.prepare(data);
    std::vector<torch::Tensor> seen;
    for (auto& b : prepared) seen.push_back(acc.gather_for_metrics(b["id"]));
    auto all = torch::cat(seen).reshape(-1);
    EXPECT_TRUE(all.equal(torch::arange(10).to(torch::kFloat))) << all;
  });
}

TEST(Accelerator, SyncEachBatchEqualsFullBatch) {
  // All-reduce on every batch, step every 2: the same training as accumulation.
  accel::testing::run_distributed(2, [&] {
    auto ref = reference(12, 2, 0.0, 4);
    Accelerator acc(AcceleratorOptions().gradient_accumulation_plugin(
        GradientAccumulationPlugin().num_steps(2).sync_each_batch(true)));
    auto run = train(acc, 3, 0.0);
    expect_same_training(run, ref);
  });
}

TEST(Accelerator, SaveWritesFromTheMainProcessOnly) {
  const TempDir dir("accelerator");
  const auto path = dir / "save.safetensors";
  accel::testing::run_distributed(2, [&] {
    Accelerator acc;
    // Each rank offers a different tensor; only rank 0's may reach the file.
    acc.save({{"w", torch::full({3}, static_cast<float>(acc.process_index()))}}, path);
    acc.wait_for_everyone();
    auto back = safetensors::load_file(path);
    EXPECT_TRUE(back["w"].equal(torch::zeros({3})));
  });
}
