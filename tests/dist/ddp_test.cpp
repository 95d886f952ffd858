// DDP equivalence: N steps with 2 ranks at per-rank batch b give the same
// parameters as one process at batch 2b on the same samples.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/dist/collectives.h"
#include "accel/parallel/ddp.h"
#include "accel/state.h"
#include "support/distributed.h"

using namespace accel;
using accel::testing::seed_cpu;

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(6, 16));
    fc2 = register_module("fc2", torch::nn::Linear(16, 16));
    branch = register_module("branch", torch::nn::Linear(16, 16));
    head = register_module("head", torch::nn::Linear(16, 3));
  }
  torch::Tensor forward(torch::Tensor x, bool use_branch = true) {
    x = torch::tanh(fc1(x));
    x = torch::tanh(fc2(x));
    if (use_branch) x = x + torch::tanh(branch(x));
    return head(x);
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, branch{nullptr}, head{nullptr};
};
TORCH_MODULE(Net);

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
  std::vector<torch::Tensor> out;
  for (auto& p : net->parameters()) out.push_back(p.detach().clone());
  return out;
}

void expect_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), tol) << "parameter " << i;
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
    std::vector<torch::Tensor> mine;
    for (auto& p : net->parameters()) mine.push_back(p.detach().clone());
    expect_close(mine, ref, 1e-5);
    // And the ranks agree exactly.
    for (auto& p : mine) EXPECT_EQ(gather(p.reshape({1, -1})).diff(1, 0).abs().max().item<float>(), 0.0f);
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
    auto w = lin->parameters()[0];
    EXPECT_EQ(gather(w.reshape({1, -1})).diff(1, 0).abs().max().item<float>(), 0.0f);
  });
}
