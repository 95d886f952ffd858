// DDP equivalence: N steps with 2 ranks at per-rank batch b give the same
// parameters as one process at batch 2b on the same samples.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/dist/collectives.h"
#include "accel/parallel/ddp.h"
#include "accel/state.h"
#include "support/classifier.h"
#include "support/distributed.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::clones;
using accel::testing::expect_close;
using accel::testing::expect_ranks_agree;
using accel::testing::seed_cpu;

namespace {

using Net = accel::testing::classifier::Net<{.fc2 = true, .branch = true}>;

constexpr int kSteps = 5, kBatch = 4;

torch::Tensor inputs(int step) {
  auto g = at::detail::createCPUGenerator(1000 + step);
  return torch::randn({2 * kBatch, 6}, g);
}
torch::Tensor targets(int step) {
  auto g = at::detail::createCPUGenerator(2000 + step);
  return torch::randint(0, 3, {2 * kBatch}, g);
}

// The reference: one process, the full batch of 2b samples per step.
std::vector<torch::Tensor> single_process(int accumulation, bool branch_every_other) {
  seed_cpu(7);
  Net net;
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(0.01));
  for (int step = 0; step < kSteps; ++step) {
    opt.zero_grad();
    auto x = inputs(step), y = targets(step);
    bool use_branch = !branch_every_other || step % 2 == 0;
    // k micro-batches of 2b/k samples, each loss divided by k.
    for (int m = 0; m < accumulation; ++m) {
      int n = 2 * kBatch / accumulation;
      auto loss = torch::nn::functional::cross_entropy(net(x.narrow(0, m * n, n), use_branch), y.narrow(0, m * n, n));
      (loss / accumulation).backward();
    }
    opt.step();
  }
  return clones(net->parameters());
}

void ddp_run(int accumulation, bool branch_every_other, DDPOptions opts) {
  // The reference runs in each rank: autograd used in the parent before
  // fork (with CUDA present) breaks autograd in the children.
  accel::testing::run_distributed(2, [&] {
    auto ref = single_process(accumulation, branch_every_other);
    auto& st = state();
    // Different seeds per rank: DDP's broadcast must make them equal.
    seed_cpu(7 + st.rank() * 100);
    Net net;
    DistributedDataParallel<Net> ddp(net, st.process_group(), opts);
    torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(0.01));
    for (int step = 0; step < kSteps; ++step) {
      opt.zero_grad();
      // This rank's half of the global batch.
      auto x = inputs(step).narrow(0, st.rank() * kBatch, kBatch);
      auto y = targets(step).narrow(0, st.rank() * kBatch, kBatch);
      bool use_branch = !branch_every_other || step % 2 == 0;
      int n = kBatch / accumulation;
      for (int m = 0; m < accumulation; ++m) {
        auto micro = [&] {
          auto loss =
              torch::nn::functional::cross_entropy(ddp(x.narrow(0, m * n, n), use_branch), y.narrow(0, m * n, n));
          (loss / accumulation).backward();
        };
        if (m + 1 < accumulation) {
          auto guard = ddp.no_sync();
          micro();
        } else {
          micro();
        }
      }
      opt.step();
    }
    const auto mine = clones(net->parameters());
    expect_close(mine, ref, 1e-5);
    expect_ranks_agree(mine);  // exactly
  });
}

}  // namespace

TEST(DDP, EqualsSingleProcessFullBatch) { ddp_run(1, false, {}); }

TEST(DDP, SmallBucketsStillEqual) { ddp_run(1, false, DDPOptions().bucket_cap_mb(0.001)); }

TEST(DDP, NoSyncAccumulationEqualsFullBatch) { ddp_run(2, false, {}); }

TEST(DDP, FindUnusedParametersWithIdleBranch) { ddp_run(1, true, DDPOptions().find_unused_parameters(true)); }

TEST(DDP, BroadcastsInitialParametersAndBuffers) {
  accel::testing::run_distributed(3, [] {
    auto& st = state();
    seed_cpu(st.rank());
    auto bn = torch::nn::BatchNorm1d(4);
    bn->running_mean.fill_(static_cast<float>(st.rank()));
    auto lin = torch::nn::Sequential(torch::nn::Linear(4, 4), bn);
    DistributedDataParallel<torch::nn::Sequential> ddp(lin, st.process_group());
    EXPECT_TRUE(bn->running_mean.eq(0).all().item<bool>());
    expect_ranks_agree({lin->parameters()[0]});
  });
}
