// GradScaler over 2 ranks (Gloo on loopback): an overflow on one rank makes
// every rank skip the step and back off, so the replicas and their scales
// stay equal; good steps step everywhere. Without a group the ranks would
// part ways, which the last test shows is what the reduction prevents.
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/amp/grad_scaler.h"
#include "accel/dist/collectives.h"
#include "accel/state.h"
#include "support/distributed.h"

using namespace accel;
using accel::testing::run_distributed;

namespace {

struct Replica {
  torch::nn::Linear net{nullptr};
  std::unique_ptr<torch::optim::SGD> opt;
  Replica() {
    torch::manual_seed(3);  // the same initial parameters on every rank
    net = torch::nn::Linear(5, 2);
    opt = std::make_unique<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
  }
  // Each rank its own data, as in data-parallel training.
  torch::Tensor loss(int step) {
    torch::manual_seed(1000 * state().rank() + step);
    return net->forward(torch::randn({8, 5})).pow(2).mean();
  }
  torch::Tensor flat() { return torch::cat({net->weight.detach().flatten(), net->bias.detach()}); }
};

// Every rank's copy of `t`, stacked.
torch::Tensor everyone(const torch::Tensor& t) { return gather(t.unsqueeze(0)); }

}  // namespace

TEST(GradScalerDist, InfOnOneRankSkipsOnAll) {
  run_distributed(2, [] {
    const int rank = state().rank();
    Replica r;
    GradScaler scaler(GradScalerOptions().init_scale(1024).growth_interval(2), state().process_group());

    // Step 0: rank 1 overflows, rank 0 does not.
    r.opt->zero_grad();
    scaler.scale(r.loss(0)).backward();
    if (rank == 1) r.net->weight.mutable_grad().view(-1)[0] = std::numeric_limits<float>::infinity();
    const auto before = r.flat();
    EXPECT_FALSE(scaler.step(*r.opt)) << "rank " << rank;
    EXPECT_TRUE(scaler.found_inf()) << "rank " << rank;
    EXPECT_TRUE(torch::equal(r.flat(), before)) << "rank " << rank << " stepped";
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), 512.0) << "rank " << rank;

    // Steps 1 and 2: good everywhere; both step, and the scale grows after 2.
    for (int step = 1; step <= 2; ++step) {
      r.opt->zero_grad();
      scaler.scale(r.loss(step)).backward();
      const auto prev = r.flat();
      EXPECT_TRUE(scaler.step(*r.opt)) << "rank " << rank << " step " << step;
      EXPECT_FALSE(torch::equal(r.flat(), prev)) << "rank " << rank << " step " << step;
      scaler.update();
    }
    EXPECT_EQ(scaler.get_scale(), 1024.0);
    auto scales = everyone(torch::tensor({scaler.get_scale(), static_cast<double>(scaler.growth_tracker())}));
    EXPECT_TRUE(torch::equal(scales[0], scales[1])) << scales;
  });
}

TEST(GradScalerDist, NanOnRankZeroViaUnscale) {
  run_distributed(2, [] {
    const int rank = state().rank();
    Replica r;
    GradScaler scaler(GradScalerOptions(), state().process_group());
    scaler.scale(r.loss(0)).backward();
    if (rank == 0) r.net->bias.mutable_grad()[1] = std::numeric_limits<float>::quiet_NaN();
    scaler.unscale_(*r.opt);  // the reduction happens here, before any clipping
    EXPECT_TRUE(scaler.found_inf()) << "rank " << rank;
    EXPECT_FALSE(scaler.step(*r.opt));
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), 32768.0);
    EXPECT_EQ(scaler.growth_tracker(), 0);
  });
}

TEST(GradScalerDist, WithoutAGroupRanksDecideAlone) {
  run_distributed(2, [] {
    const int rank = state().rank();
    Replica r;
    GradScaler scaler(GradScalerOptions().init_scale(1024));
    scaler.scale(r.loss(0)).backward();
    if (rank == 1) r.net->weight.mutable_grad().view(-1)[0] = std::numeric_limits<float>::infinity();
    EXPECT_EQ(scaler.step(*r.opt), rank == 0);
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), rank == 0 ? 1024.0 : 512.0);
  });
}
