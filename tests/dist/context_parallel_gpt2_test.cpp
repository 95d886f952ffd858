// The GPT-2 example's tiny model trained with context parallelism equals the
// same model trained in one process: 3 AdamW steps (fp32) with gradient
// clipping active, the same losses and clipped norms each step, and every
// parameter within 1e-5.
//
// Each cp rank holds the whole model and its part of every sequence
// (load-balanced, or contiguous); attention runs across the ranks by the
// strategy under test. Its loss is the mean over its own tokens, and the
// parts hold equally many, so the whole batch's loss and gradient are the
// means over the cp ranks: the gradients are averaged over the cp group
// before clipping (the Accelerator does this with DDP over "dp_cp").
//
// The reference runs in each rank (autograd must not run in the parent
// before the fork).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/dist/collectives.h"
#include "accel/optim/clip_grad.h"
#include "accel/parallel/context/context_parallel.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/state.h"
#include "gpt2/model.h"
#include "support/distributed.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

constexpr int kSteps = 3;
constexpr int64_t kBatch = 4, kSeq = 32;
constexpr double kMaxNorm = 0.5, kLr = 1e-3;

struct Trace {
  std::vector<double> losses, norms;
  std::map<std::string, torch::Tensor> params;
};

std::pair<torch::Tensor, torch::Tensor> batch(int step, int64_t vocab) {
  auto g = at::detail::createCPUGenerator(700 + step);
  auto tokens = torch::randint(0, vocab, {kBatch, kSeq + 1}, g);
  return {tokens.narrow(1, 0, kSeq).contiguous(), tokens.narrow(1, 1, kSeq).contiguous()};
}

torch::optim::AdamW adamw(gpt2::GPT2& model) {
  return torch::optim::AdamW(model->parameters(), torch::optim::AdamWOptions(kLr).weight_decay(0.1));
}

// `cp` null: the one-process reference.
Trace train(const ContextParallel* cp) {
  seed_cpu(13);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  auto opt = adamw(model);
  Trace t;
  for (int step = 0; step < kSteps; ++step) {
    auto [tokens, targets] = batch(step, model->options().vocab_size());
    opt.zero_grad();
    torch::Tensor loss;
    if (cp) {
      auto parts = cp->shard({tokens, targets}, /*seq_dim=*/1);
      EXPECT_EQ(parts[0].size(1), kSeq / cp->size());
      ContextParallelScope scope(*cp);
      loss = model(parts[0], parts[1]);
    } else {
      loss = model(tokens, targets);
    }
    loss.backward();
    if (cp) {
      for (auto& p : model->parameters()) all_reduce_(p.mutable_grad(), ReduceOp::mean, cp->group());
      loss = reduce(loss.detach(), ReduceOp::mean, cp->group());
    }
    t.norms.push_back(clip_grad_norm(model->parameters(), kMaxNorm).item<double>());
    opt.step();
    t.losses.push_back(loss.item<double>());
  }
  for (const auto& p : model->named_parameters()) t.params[p.key()] = p.value().detach().clone();
  return t;
}

void expect_matches(const Trace& ref, const Trace& got) {
  ASSERT_EQ(got.losses.size(), ref.losses.size());
  for (int s = 0; s < kSteps; ++s) {
    EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-5) << "loss at step " << s;
    EXPECT_NEAR(got.norms[s], ref.norms[s], 1e-5) << "gradient norm at step " << s;
  }
  // Clipping must have acted, or the norm would be untested.
  EXPECT_GT(ref.norms[0], kMaxNorm);
  ASSERT_EQ(got.params.size(), ref.params.size());
  for (const auto& [name, want] : ref.params) {
    ASSERT_TRUE(got.params.count(name)) << name;
    EXPECT_LT(max_diff(got.params.at(name), want), 1e-5) << name;
  }
}

void expect_cp_equals_one_process(int cp_size, const std::string& strategy, bool load_balance) {
  run_distributed(cp_size, [&] {
    const auto ref = train(nullptr);
    ParallelismConfig config;
    config.cp_size = cp_size;
    config.cp_comm_strategy = strategy;
    DeviceMesh mesh(state(), config);
    ContextParallel cp(mesh, load_balance);
    ASSERT_EQ(cp.size(), cp_size);
    EXPECT_EQ(to_string(cp.strategy()), strategy);
    expect_matches(ref, train(&cp));
  });
}

}  // namespace

TEST(ContextParallelGPT2, AllGatherTwoRanksEqualOneProcess) { expect_cp_equals_one_process(2, "allgather", true); }

TEST(ContextParallelGPT2, AllToAllTwoRanksEqualOneProcess) { expect_cp_equals_one_process(2, "alltoall", true); }

TEST(ContextParallelGPT2, AllToAllFourRanksContiguousEqualOneProcess) {
  expect_cp_equals_one_process(4, "alltoall", false);
}
