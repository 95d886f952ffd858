// ZeRO (AcceleratorOptions::sharding) on 2 and 3 CPU ranks over Gloo. Each
// strategy trains to the same parameters as DDP, which equals one process on
// the full batch: the reference here is that single process, plain LibTorch,
// computed inside each rank on the same rows. Then the memory claims (each
// rank's optimizer state and gradients are 1/N), the fp16 overflow skip
// agreed across ranks, the refusals, and the checkpoints: sharded save/load
// equals uninterrupted training, and a consolidated save from 2 ranks
// resumes on 3.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "accel/accelerator.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/parallel/zero/zero_engine.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/temp_dir.h"
#include "support/zero_training.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::zero_training;
namespace F = torch::nn::functional;
namespace fs = std::filesystem;

namespace {

struct Variant {
  int64_t bucket = 500'000'000;
  bool overlap = true;
  bool module_zero_grad = false;
  OffloadDevice offload = OffloadDevice::none;
};

void expect_equals_reference(ShardingStrategy strategy, int world, int64_t accumulation, double clip, Opt kind,
                             Variant v = {}) {
  run_distributed(world, [&] {
    const int64_t steps = 4;
    auto ref = reference(kind, {{steps, world * kRows * accumulation}}, clip);
    auto options = zero_options(strategy, accumulation, v.bucket, v.overlap);
    options.sharding()->offload_optimizer(OffloadOptions().device(v.offload));
    Trainer t(options, kind);
    t.module_zero_grad = v.module_zero_grad;
    if (v.offload == OffloadDevice::cpu) {
      EXPECT_FALSE(t.engine().masters_are_views());
    }
    t.train(steps, clip);
    const auto mine = snapshot(*t.net);
    EXPECT_LT(max_diff(mine, ref.params), 1e-5) << to_string(strategy);
    expect_ranks_agree(mine);
    ASSERT_EQ(t.norms.size(), ref.norms.size());
    for (size_t i = 0; i < ref.norms.size(); ++i) EXPECT_NEAR(t.norms[i], ref.norms[i], 1e-5) << "step " << i;
    if (clip > 0) {
      EXPECT_GT(ref.norms[0], clip);  // clipping really happened
    }
  });
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int64_t state_bytes(const torch::optim::Optimizer& opt) {
  int64_t n = 0;
  for (const auto& [name, t] : optimizer_state(opt).tensors) n += t.nbytes();
  return n;
}

}  // namespace

// --- the same training as DDP --------------------------------------------

TEST(Zero, Zero1AdamWWithAccumulationAndClippingEqualsDdp) {
  expect_equals_reference(ShardingStrategy::shard_optimizer, 2, 2, 0.05, Opt::adamw);
}

TEST(Zero, Zero2AdamWWithAccumulationAndClippingEqualsDdp) {
  expect_equals_reference(ShardingStrategy::shard_grad_op, 2, 2, 0.05, Opt::adamw);
}

TEST(Zero, NoShardAdamWWithAccumulationAndClippingEqualsDdp) {
  expect_equals_reference(ShardingStrategy::no_shard, 2, 2, 0.05, Opt::adamw);
}

TEST(Zero, ThreeRanksZero1AndZero2EqualDdp) {
  // Groups of 384 and 51 elements: slices of 128 and 17, cutting through fc2.weight and head.weight.
  expect_equals_reference(ShardingStrategy::shard_optimizer, 3, 1, 0.05, Opt::adamw);
  expect_equals_reference(ShardingStrategy::shard_grad_op, 3, 2, 0.05, Opt::adamw);
}

TEST(Zero, Zero2SmallBucketsWithAndWithoutOverlapEqualDdp) {
  // Buckets of 40 elements: many per rank, several straddling the slice border.
  // Clipping compares the gradient norms too (Adam alone would hide a wrong
  // gradient scale).
  expect_equals_reference(ShardingStrategy::shard_grad_op, 3, 1, 0.05, Opt::adamw, {.bucket = 40});
  expect_equals_reference(ShardingStrategy::shard_grad_op, 2, 2, 0.05, Opt::adamw, {.bucket = 40, .overlap = false});
}

TEST(Zero, ModuleZeroGradBetweenStepsKeepsZero1AndNoShardRight) {
  expect_equals_reference(ShardingStrategy::shard_optimizer, 2, 2, 0.05, Opt::adamw, {.module_zero_grad = true});
  expect_equals_reference(ShardingStrategy::no_shard, 2, 1, 0.05, Opt::sgd, {.module_zero_grad = true});
}

TEST(Zero, OptimizerOffloadedToCpuMemoryEqualsDdp) {
  // Separate fp32 master slices in host memory (here the model is on the CPU too).
  expect_equals_reference(ShardingStrategy::shard_grad_op, 2, 2, 0.05, Opt::adamw, {.offload = OffloadDevice::cpu});
  expect_equals_reference(ShardingStrategy::shard_optimizer, 2, 1, 0.05, Opt::sgd, {.offload = OffloadDevice::cpu});
}

TEST(Zero, SgdWithMomentumEqualsDdp) {
  expect_equals_reference(ShardingStrategy::shard_grad_op, 2, 2, 0.05, Opt::sgd);
  expect_equals_reference(ShardingStrategy::shard_optimizer, 3, 1, 0.0, Opt::sgd);
}

TEST(Zero, DirectlyEqualsAcceleratorDdpUnderBf16Autocast) {
  // Both runs under bf16 autocast in the same processes: ZeRO-2 against
  // the Accelerator's DDP on the same rows.
  run_distributed(2, [] {
    auto run = [](std::optional<ShardingOptions> sharding) {
      Trainer t(AcceleratorOptions().mixed_precision("bf16").sharding(sharding), Opt::adamw);
      t.train(4, 0.05);
      return std::pair{snapshot(*t.net), t.norms};
    };
    const auto [ddp, ddp_norms] = run(std::nullopt);
    const auto [zero, zero_norms] = run(ShardingOptions());
    EXPECT_LT(max_diff(zero, ddp), 1e-5);
    ASSERT_EQ(zero_norms.size(), ddp_norms.size());
    for (size_t i = 0; i < ddp_norms.size(); ++i) EXPECT_NEAR(zero_norms[i], ddp_norms[i], 1e-5);
  });
}

TEST(Zero, Bf16MasterWeightsKeepFp32SlicesAndTrackDdp) {
  run_distributed(2, [] {
    auto options = [] { return AcceleratorOptions().mixed_precision("bf16").master_weights(true); };
    Trainer ddp(options(), Opt::adamw);
    ddp.train(4, 0.0);
    Trainer zero(options().sharding(ShardingOptions()), Opt::adamw);
    EXPECT_EQ(zero.net->fc1->weight.scalar_type(), torch::kBFloat16);
    EXPECT_FALSE(zero.engine().masters_are_views());
    EXPECT_EQ(zero.engine().master(0).scalar_type(), torch::kFloat);
    zero.train(4, 0.0);
    // The same bf16 model, to bf16 rounding of the same fp32 masters.
    EXPECT_LT(max_diff(snapshot(*zero.net), snapshot(*ddp.net)), 1e-2);
    expect_ranks_agree(snapshot(*zero.net));
  });
}

// --- memory ----------------------------------------------------------------

TEST(Zero, EachRankHoldsOneNthOfOptimizerStateAndGradients) {
  for (int world : {2, 3}) {
    run_distributed(world, [world] {
      // The full AdamW state of this model in one process.
      seed_cpu(7);
      Net ref_net;
      auto ref_opt = make_optimizer(Opt::adamw, ref_net);
      F::cross_entropy(ref_net(classifier::features(kSamples).narrow(0, 0, 4)),
                       classifier::labels(kSamples).narrow(0, 0, 4))
          .backward();
      ref_opt->step();
      const int64_t full = state_bytes(*ref_opt);
      int64_t numel = 0;
      for (auto& p : ref_net->parameters()) numel += p.numel();
      ASSERT_EQ(full, 2 * 4 * numel);  // exp_avg and exp_avg_sq, fp32

      for (auto strategy : {ShardingStrategy::shard_optimizer, ShardingStrategy::shard_grad_op}) {
        Trainer t(zero_options(strategy), Opt::adamw);
        t.train(2, 0.0);
        const auto& layout = t.engine().layout();
        int64_t padded = 0;
        for (const auto& g : layout.groups) padded += g.padded_numel;
        // Exactly the 1/N slice of the (padded) state; padding is < N per group.
        EXPECT_EQ(state_bytes(t.optimizer->optimizer()), 2 * 4 * padded / world) << to_string(strategy);
        EXPECT_LE(state_bytes(t.optimizer->optimizer()), full / world + 2 * 4 * 2 * world);
        const auto mem = t.engine().memory();
        EXPECT_EQ(mem.optimizer_state, 2 * 4 * padded / world);
        EXPECT_EQ(mem.master_weights, 0);  // fp32 model: the slices are views of it
        if (strategy == ShardingStrategy::shard_grad_op) {
          // Only the 1/N slice of the gradients; no full-size gradient survives backward.
          EXPECT_EQ(mem.gradient_slices, 4 * padded / world);
          EXPECT_EQ(mem.full_gradients, 0);
          for (auto& p : t.net->parameters()) EXPECT_FALSE(p.grad().defined());
          EXPECT_GT(mem.peak_buckets, 0);
        } else {
          // ZeRO-1 keeps the full gradients; its slice is their rank's range.
          EXPECT_EQ(mem.gradient_slices, 0);
          EXPECT_EQ(mem.full_gradients, 4 * padded);
        }
      }
    });
  }
}

// --- fp16 -------------------------------------------------------------------

TEST(Zero, Fp16OverflowInOneRanksSliceSkipsTheStepOnEveryRank) {
  run_distributed(2, [] {
    Trainer t(AcceleratorOptions()
                  .mixed_precision("fp16")
                  .scaler(GradScalerOptions().init_scale(1024))
                  .sharding(ShardingOptions().strategy(ShardingStrategy::shard_grad_op)),
              Opt::adamw);
    const int rank = t.acc.process_index();
    // fc1.weight comes first in the layout: its elements are in rank 0's slice only.
    ASSERT_LE(t.engine().layout().groups[0].params[0].numel, t.engine().layout().slice_numel(0));
    auto overflow = [&](int64_t) -> torch::Tensor {
      if (rank == 1) return t.net->fc1->weight.sum() * std::numeric_limits<float>::infinity();
      return torch::zeros({});
    };
    t.train(1, 0.0);
    const auto before = snapshot(*t.net);
    t.train(1, 0.0, overflow);
    EXPECT_EQ(max_diff(snapshot(*t.net), before), 0.0) << "rank " << rank << " stepped";
    t.train(1, 0.0);
    EXPECT_GT(max_diff(snapshot(*t.net), before), 0.0);
    ASSERT_EQ(t.skipped.size(), 3u);
    EXPECT_FALSE(t.skipped[0]);
    EXPECT_TRUE(t.skipped[1]) << "rank " << rank;
    EXPECT_FALSE(t.skipped[2]);
    EXPECT_EQ(t.acc.scaler()->get_scale(), 512.0) << "rank " << rank;
    expect_ranks_agree(snapshot(*t.net));
  });
}

// --- refusals ---------------------------------------------------------------

TEST(Zero, RefusesLbfgsAndAnOptimizerWithoutItsModel) {
  run_distributed(2, [] {
    Accelerator acc(zero_options(ShardingStrategy::shard_grad_op));
    Net net;
    auto lbfgs = std::make_shared<torch::optim::LBFGS>(net->parameters());
    expect_error<std::invalid_argument>([&] { acc.prepare(net, lbfgs); }, {"LBFGS", "element-wise"});
    Net other;
    expect_error<std::invalid_argument>(
        [&] { acc.prepare(std::make_shared<torch::optim::SGD>(other->parameters(), 0.1)); },
        {"prepare them together", "model first"});
    EXPECT_THROW(check_sharding_options(ShardingOptions().reduce_bucket_size(0)), std::invalid_argument);
  });
}

// --- checkpoints ------------------------------------------------------------

class ZeroCheckpoint : public ::testing::Test {
 protected:
  TempDir dir_{"zero"};
};

TEST_F(ZeroCheckpoint, ShardedSaveAndLoadEqualsUninterruptedTraining) {
  const fs::path dir = dir_;
  for (auto strategy :
       {ShardingStrategy::shard_grad_op, ShardingStrategy::shard_optimizer, ShardingStrategy::no_shard}) {
    const auto ckpt = dir / ("ckpt_" + to_string(strategy));
    run_distributed(2, [&] {
      Trainer t(zero_options(strategy, 2), Opt::adamw);
      t.train(3, 0.05);
      t.acc.save_state(ckpt);
    });
    ASSERT_TRUE(fs::exists(ckpt / "zero_layout.json"));
    ASSERT_TRUE(fs::exists(ckpt / "zero_shard_rank0.safetensors"));
    ASSERT_TRUE(fs::exists(ckpt / "zero_shard_rank1.safetensors"));
    ASSERT_TRUE(fs::exists(ckpt / "model.safetensors"));
    EXPECT_FALSE(fs::exists(ckpt / "optimizer.safetensors"));  // not consolidated
    run_distributed(2, [&] {
      Trainer whole(zero_options(strategy, 2), Opt::adamw);
      whole.train(6, 0.05);
      Trainer resumed(zero_options(strategy, 2), Opt::adamw);
      resumed.acc.load_state(ckpt);
      resumed.first = 3 * 2 * 2 * kRows;
      resumed.train(3, 0.05);
      EXPECT_EQ(max_diff(snapshot(*resumed.net), snapshot(*whole.net)), 0.0) << to_string(strategy);
      EXPECT_EQ(state_bytes(resumed.optimizer->optimizer()), state_bytes(whole.optimizer->optimizer()));
    });
  }
  // The layout file and the shards say what the spec says.
  const auto layout = nlohmann::json::parse(slurp(dir / "ckpt_shard_grad_op" / "zero_layout.json"));
  EXPECT_EQ(layout["format"], "accel-zero-v1");
  EXPECT_EQ(layout["world_size"], 2);
  EXPECT_EQ(layout["strategy"], "shard_grad_op");
  ASSERT_EQ(layout["groups"].size(), 2u);
  EXPECT_EQ(layout["groups"][0]["params"][0]["name"], "fc1.weight");
  EXPECT_EQ(layout["groups"][0]["params"][0]["shape"], nlohmann::json({16, 6}));
  EXPECT_EQ(layout["groups"][0]["params"][0]["dtype"], "F32");
  EXPECT_EQ(layout["groups"][0]["padded_numel"], 384);  // 96+16+256+16
  EXPECT_EQ(layout["groups"][1]["padded_numel"], 52);   // 48+3, padded to even
  safetensors::File shard(dir / "ckpt_shard_grad_op" / "zero_shard_rank1.safetensors");
  EXPECT_EQ(shard.get("group.0.param").numel(), 192);
  EXPECT_EQ(shard.get("group.1.state.exp_avg_sq").numel(), 26);
  EXPECT_EQ(shard.metadata().at("step.0"), "3");
  // model.safetensors holds the full, trained parameters.
  run_distributed(1, [&] {
    auto weights = safetensors::load_file(dir / "ckpt_shard_grad_op" / "model.safetensors");
    ASSERT_NE(weights.find("head.bias"), nullptr);
    EXPECT_EQ(weights["fc2.weight"].sizes(), (std::vector<int64_t>{16, 16}));
  });
}

TEST_F(ZeroCheckpoint, ConsolidatedSaveOnTwoRanksResumesOnThree) {
  const fs::path ckpt = dir_ / "ckpt";
  auto options = [](int64_t accumulation) {
    auto o = zero_options(ShardingStrategy::shard_grad_op, accumulation);
    o.sharding()->consolidated_checkpoint(true);
    return o;
  };
  run_distributed(2, [&] {
    Trainer t(options(1), Opt::adamw);
    t.train(3, 0.05);
    t.acc.save_state(ckpt);
  });
  ASSERT_TRUE(fs::exists(ckpt / "optimizer.safetensors"));
  ASSERT_TRUE(fs::exists(ckpt / "optimizer.json"));
  ASSERT_TRUE(fs::exists(ckpt / "zero_shard_rank1.safetensors"));
  // Sharded state alone does not load on 3 ranks; the consolidated one does,
  // and continues exactly like a run whose global batch grew from 4 to 6 rows.
  run_distributed(3, [&] {
    auto ref = reference(Opt::adamw, {{3, 2 * kRows}, {3, 3 * kRows}}, 0.05);
    Trainer t(options(1), Opt::adamw);
    t.acc.load_state(ckpt);
    t.first = 3 * 2 * kRows;
    t.train(3, 0.05);
    EXPECT_LT(max_diff(snapshot(*t.net), ref.params), 1e-5);
    expect_ranks_agree(snapshot(*t.net));
  });
  // The consolidated files are the ordinary format: one process without
  // sharding resumes from them too.
  run_distributed(1, [&] {
    auto ref = reference(Opt::adamw, {{3, 2 * kRows}, {3, kRows}}, 0.05);
    Trainer t(AcceleratorOptions(), Opt::adamw);
    t.acc.load_state(ckpt);
    t.first = 3 * 2 * kRows;
    t.train(3, 0.05);
    EXPECT_LT(max_diff(snapshot(*t.net), ref.params), 1e-5);
  });
}

TEST_F(ZeroCheckpoint, ShardedStateRefusesAnotherWorldSize) {
  const fs::path ckpt = dir_ / "ckpt";
  run_distributed(2, [&] {
    Trainer t(zero_options(ShardingStrategy::shard_optimizer), Opt::adamw);
    t.train(1, 0.0);
    t.acc.save_state(ckpt);
  });
  run_distributed(3, [&] {
    Trainer t(zero_options(ShardingStrategy::shard_optimizer), Opt::adamw);
    expect_error<std::runtime_error>([&] { t.acc.load_state(ckpt); },
                                     {"saved by 2 processes", "this run has 3", "consolidated_checkpoint(true)"});
  });
}
