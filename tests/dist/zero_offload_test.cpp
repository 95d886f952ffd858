// ZeRO-Offload (ShardingOptions::offload_optimizer) through the Accelerator,
// on 1 and 2 CPU processes over Gloo: Adam/AdamW stepped on the host by the
// engine (parallel/zero/offloaded_update.h), its state in host memory (cpu)
// or in swap files (nvme).
//   - one process: sharding set means ZeRO-Offload on one device; it trains
//     as plain LibTorch does;
//   - nvme equals cpu bit for bit, both equal the reference;
//   - the delayed update follows the one-step delayed rule, computed here
//     independently with plain LibTorch;
//   - save/load of an offloaded state resumes exactly;
//   - what cannot be offloaded is refused by name.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "accel/accelerator.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/parallel/zero/zero_engine.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/temp_dir.h"
#include "support/zero_training.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::zero_training;
namespace fs = std::filesystem;

namespace {

class ZeroOffload : public ::testing::Test {
 protected:
  AcceleratorOptions offloaded(ShardingStrategy strategy, OffloadDevice device, int64_t accumulation = 1,
                               bool delayed = false) const {
    auto options = zero_options(strategy, accumulation);
    options.sharding()->offload_optimizer(
        OffloadOptions().device(device).nvme_path(dir_ / "swap").delayed_update(delayed));
    return options;
  }
  TempDir dir_{"zero_offload"};
};

// Plain LibTorch on full batches with ZeRO-Offload's delayed update: the
// gradient of step t is taken at the parameters the model had before step
// t-1's update arrived. `master` is the optimizer's trajectory; the model
// receives master's values one step late, and all of them at the end.
std::vector<torch::Tensor> delayed_reference(int64_t steps, int64_t rows_per_step, double clip) {
  seed_cpu(7);
  Net model;
  seed_cpu(7);
  Net master;
  auto opt = make_optimizer(Opt::adamw, master);
  const auto x = classifier::features(kSamples), y = classifier::labels(kSamples);
  for (int64_t s = 0; s < steps; ++s) {
    model->zero_grad();
    const int64_t first = s * rows_per_step;
    F::cross_entropy(model(x.narrow(0, first, rows_per_step)), y.narrow(0, first, rows_per_step)).backward();
    if (clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), clip);
    torch::NoGradGuard no_grad;
    auto mp = model->parameters(), tp = master->parameters();
    for (size_t i = 0; i < mp.size(); ++i) {
      tp[i].mutable_grad() = mp[i].grad().clone();
      mp[i].copy_(tp[i]);  // the previous step's update reaches the model now
    }
    opt->step();
  }
  return snapshot(*master);
}

}  // namespace

TEST_F(ZeroOffload, OneProcessCpuAndNvmeOffloadTrainLikePlainLibTorch) {
  run_distributed(1, [&] {
    const auto ref = reference(Opt::adamw, {{4, kRows}}, 0.05);
    Trainer cpu(offloaded(ShardingStrategy::shard_grad_op, OffloadDevice::cpu), Opt::adamw);
    EXPECT_EQ(cpu.engine().world_size(), 1);
    EXPECT_FALSE(cpu.engine().masters_are_views());
    EXPECT_EQ(cpu.engine().master(0).device().type(), torch::kCPU);
    cpu.train(4, 0.05);
    EXPECT_LT(max_diff(snapshot(*cpu.net), ref.params), 1e-5);
    // The optimizer object holds no state: the engine's CPU Adam does.
    EXPECT_TRUE(cpu.optimizer->optimizer().state().empty());
    EXPECT_EQ(cpu.engine().memory().optimizer_state, 2 * 4 * (384 + 51));

    Trainer nvme(offloaded(ShardingStrategy::shard_optimizer, OffloadDevice::nvme), Opt::adamw);
    nvme.train(4, 0.05);
    EXPECT_EQ(max_diff(snapshot(*nvme.net), snapshot(*cpu.net)), 0.0);
    EXPECT_TRUE(fs::exists(dir_ / "swap" / "rank0" / "group1"));
  });
}

TEST_F(ZeroOffload, NvmeEqualsCpuBitForBitOnTwoRanks) {
  for (auto strategy : {ShardingStrategy::shard_grad_op, ShardingStrategy::shard_optimizer}) {
    run_distributed(2, [&] {
      const auto ref = reference(Opt::adamw, {{4, 2 * kRows * 2}}, 0.05);
      Trainer cpu(offloaded(strategy, OffloadDevice::cpu, 2), Opt::adamw);
      cpu.train(4, 0.05);
      Trainer nvme(offloaded(strategy, OffloadDevice::nvme, 2), Opt::adamw);
      nvme.train(4, 0.05);
      const auto a = snapshot(*cpu.net), b = snapshot(*nvme.net);
      EXPECT_EQ(max_diff(a, b), 0.0) << to_string(strategy);
      EXPECT_LT(max_diff(a, ref.params), 1e-5) << to_string(strategy);
      expect_ranks_agree(b);
      // Each rank pages only its own slice.
      EXPECT_TRUE(fs::exists(dir_ / "swap" / ("rank" + std::to_string(nvme.acc.process_index())) / "group0"));
    });
  }
}

TEST_F(ZeroOffload, DelayedUpdateFollowsTheOneStepDelayedRule) {
  for (int world : {1, 2}) {
    run_distributed(world, [&] {
      const int64_t steps = 5;
      const auto delayed = delayed_reference(steps, world * kRows, 0.05);
      const auto exact = reference(Opt::adamw, {{steps, world * kRows}}, 0.05).params;
      for (auto device : {OffloadDevice::cpu, OffloadDevice::nvme}) {
        Trainer t(offloaded(ShardingStrategy::shard_grad_op, device, 1, /*delayed=*/true), Opt::adamw);
        t.train(steps, 0.05);
        // The last update is still on its way: the model lags the reference by one step.
        EXPECT_GT(max_diff(snapshot(*t.net), delayed), 1e-4);
        t.acc.wait_for_everyone();
        const auto mine = snapshot(*t.net);
        EXPECT_LT(max_diff(mine, delayed), 1e-5) << "world " << world;
        EXPECT_GT(max_diff(mine, exact), 1e-4) << "the delay must change the trajectory";
        if (world > 1) expect_ranks_agree(mine);
      }
    });
  }
}

TEST_F(ZeroOffload, SavedOffloadedStateResumesExactly) {
  for (auto device : {OffloadDevice::cpu, OffloadDevice::nvme}) {
    const auto ckpt = dir_ / ("ckpt_" + to_string(device));
    run_distributed(2, [&] {
      Trainer t(offloaded(ShardingStrategy::shard_grad_op, device), Opt::adamw);
      t.train(3, 0.05);
      t.acc.save_state(ckpt);
      EXPECT_TRUE(t.optimizer->optimizer().state().empty());  // the engine's state was lent, not kept
      t.train(3, 0.05);
      Trainer resumed(offloaded(ShardingStrategy::shard_grad_op, device), Opt::adamw);
      resumed.acc.load_state(ckpt);
      resumed.first = 3 * 2 * kRows;
      resumed.train(3, 0.05);
      EXPECT_EQ(max_diff(snapshot(*resumed.net), snapshot(*t.net)), 0.0) << to_string(device);
    });
    // The shard holds Adam's state as LibTorch's AdamW names it.
    run_distributed(1, [&] {
      safetensors::File shard(ckpt / "zero_shard_rank1.safetensors");
      EXPECT_EQ(shard.get("group.0.state.exp_avg_sq").numel(), 192);
      EXPECT_EQ(shard.metadata().at("step.0"), "3");
    });
  }
}

TEST_F(ZeroOffload, RefusesWhatItCannotOffloadByName) {
  run_distributed(1, [&] {
    expect_error<std::invalid_argument>(
        [&] { Trainer t(offloaded(ShardingStrategy::shard_grad_op, OffloadDevice::nvme), Opt::sgd); }, {"nvme"});
    expect_error<std::invalid_argument>(
        [&] { Trainer t(offloaded(ShardingStrategy::shard_grad_op, OffloadDevice::cpu, 1, true), Opt::sgd); },
        {"delayed_update"});
    expect_error<std::invalid_argument>(
        [] { check_sharding_options(ShardingOptions().offload_optimizer(OffloadOptions().delayed_update(true))); },
        {"delayed_update"});
  });
}
