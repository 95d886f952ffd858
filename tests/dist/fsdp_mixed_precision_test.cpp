// Sharded units gathered in bf16 while the model is fp32 (FSDP2's
// MixedPrecisionPolicy param_dtype, which mixed_precision bf16 sets under
// full_shard): training equals a one-process run written by hand with the
// same arithmetic (fp32 masters, a bf16 copy computing under autocast, the
// ranks' bf16 gradients averaged in fp32 or bf16); the state dict is the
// fp32 masters; checkpoints resume exactly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/amp/autocast.h"
#include "accel/checkpoint/safetensors.h"
#include "support/errors.h"
#include "support/fsdp_training.h"
#include "support/temp_dir.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::fsdp_training;

namespace {

// By hand: fp32 masters stepped by AdamW; each step a bf16 copy of them
// runs each rank's rows under autocast (outputs back to fp32 for the loss,
// as the Accelerator returns them), and the ranks' bf16 gradients are
// averaged, in fp32 (or in bf16 with `reduce_bf16`).
Result reference_bf16(const Variant& v, int64_t steps) {
  seed_cpu(7);
  Stack masters(StackOptions{.units = false});
  auto opt = make_optimizer(masters);
  Stack copy(StackOptions{.units = false});
  {
    torch::NoGradGuard no_grad;
    for (auto& p : copy->parameters()) p.set_data(p.to(torch::kBFloat16));
  }
  auto master_params = masters->parameters();
  auto copy_params = copy->parameters();
  for (int64_t s = 0; s < steps; ++s) {
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < master_params.size(); ++i) copy_params[i].copy_(master_params[i]);
    }
    std::vector<torch::Tensor> sums(master_params.size());
    for (int r = 0; r < v.world; ++r) {
      copy->zero_grad();
      const int64_t first = (s * v.world + r) * kRows;
      torch::Tensor out;
      {
        AutocastGuard autocast(torch::kCPU, MixedPrecision::bf16);
        out = copy(features().narrow(0, first, kRows));
      }
      F::cross_entropy(out.to(torch::kFloat), labels().narrow(0, first, kRows)).backward();
      for (size_t i = 0; i < copy_params.size(); ++i) {
        const auto g = v.reduce_bf16 ? copy_params[i].grad() : copy_params[i].grad().to(torch::kFloat);
        sums[i] = r == 0 ? g.clone() : sums[i] + g;
      }
    }
    for (size_t i = 0; i < master_params.size(); ++i)
      master_params[i].mutable_grad() = (sums[i] / v.world).to(torch::kFloat);
    opt->step();
  }
  Result r;
  for (const auto& item : masters->named_parameters()) r.params[item.key()] = item.value().detach().clone();
  return r;
}

void expect_equals_bf16_reference(const Variant& v, double tolerance) {
  run_distributed(v.world, [&] {
    const int64_t steps = 4;
    const auto ref = reference_bf16(v, steps);
    Trainer t(v);
    // Inside a block's forward: its parameters and its input are bf16.
    std::vector<torch::ScalarType> seen;
    auto& block = t.net->blocks[1];
    block->probe = [&] { seen.push_back(block->fc1->weight.scalar_type()); };
    t.train(steps);
    ASSERT_EQ(seen.size(), static_cast<size_t>(steps * (v.checkpoint ? 2 : 1)));
    for (auto dtype : seen) EXPECT_EQ(dtype, torch::kBFloat16);
    const auto mine = t.params();
    for (const auto& [name, p] : mine) EXPECT_EQ(p.scalar_type(), torch::kFloat) << name;
    EXPECT_LT(max_diff(mine, ref.params), tolerance);
    std::vector<torch::Tensor> all;
    for (const auto& [name, p] : mine) all.push_back(p);
    expect_ranks_agree(all);
  });
}

}  // namespace

TEST(FullShardMixedPrecision, Bf16GathersEqualTheHandWrittenRun) { expect_equals_bf16_reference({.bf16 = true}, 1e-6); }

TEST(FullShardMixedPrecision, Bf16ReductionEqualsTheHandWrittenRun) {
  expect_equals_bf16_reference({.bf16 = true, .reduce_bf16 = true}, 1e-6);
}

TEST(FullShardMixedPrecision, WithOffloadCheckpointingHybridAndMetaInit) {
  // CPU Adam writes the bf16 copies the gathers read in the same pass.
  expect_equals_bf16_reference({.offload_param = true, .bf16 = true}, 1e-5);
  expect_equals_bf16_reference({.checkpoint = true, .bf16 = true}, 1e-6);
  expect_equals_bf16_reference({.world = 4, .hybrid_shard_size = 2, .bf16 = true}, 1e-5);
  expect_equals_bf16_reference({.meta_init = true, .bf16 = true}, 1e-6);
}

TEST(FullShardMixedPrecision, GathersHalfTheBytesAndTheStateDictIsTheFp32Masters) {
  run_distributed(2, [&] {
    seed_cpu(7);
    const Stack original(StackOptions{.units = false});
    Trainer t({.bf16 = true});
    auto& sharding = t.sharding();
    for (const auto& unit : sharding.units()) {
      EXPECT_EQ(unit->dtype(), torch::kFloat);
      EXPECT_EQ(unit->compute_dtype(), torch::kBFloat16);
      int64_t numel = 0;
      for (const auto& p : unit->parameters()) numel += p.numel();
      EXPECT_GE(unit->unsharded_bytes(), 2 * numel);
      EXPECT_LT(unit->unsharded_bytes(), 2 * numel + 2 * 2);  // padding to the world size
    }
    // Before any step: the values the model was built with, not rounded to bf16.
    const auto state = t.params();
    for (const auto& item : original->named_parameters()) {
      ASSERT_TRUE(state.count(item.key())) << item.key();
      EXPECT_TRUE(torch::equal(state.at(item.key()), item.value())) << item.key();
    }
    EXPECT_FALSE(torch::equal(original->embed->weight.to(torch::kBFloat16).to(torch::kFloat), original->embed->weight));
  });
}

TEST(FullShardMixedPrecision, SaveAndLoadStateResumeExactly) {
  for (const bool sharded_state : {false, true}) {
    TempDir dir;
    run_distributed(2, [&] {
      const Variant v{.sharded_state = sharded_state, .bf16 = true};
      Trainer straight(v);
      straight.train(2);
      straight.acc.save_state(dir.path() / "ckpt");
      straight.train(2);
      const auto want = straight.params();

      // Loading writes the fp32 masters (through the shards' own dtype),
      // and the next steps still reduce every gradient.
      Trainer resumed(v);
      resumed.acc.load_state(dir.path() / "ckpt");
      resumed.first = straight.first / 2;
      resumed.train(2);
      EXPECT_EQ(max_diff(resumed.params(), want), 0.0) << (sharded_state ? "sharded" : "full");
    });
    if (!sharded_state) {
      const auto saved = safetensors::load_file(dir.path() / "ckpt" / "model.safetensors");
      ASSERT_NE(saved.find("h.1.fc2.weight"), nullptr);
      EXPECT_EQ(saved.find("h.1.fc2.weight")->scalar_type(), torch::kFloat);
    }
  }
}

TEST(FullShardMixedPrecision, Refusals) {
  run_distributed(2, [&] {
    // Gathering in bf16 with nothing (no autocast) for the root unit's computation.
    expect_error<std::invalid_argument>(
        [&] {
          Accelerator acc(AcceleratorOptions().sharding(
              ShardingOptions()
                  .strategy(ShardingStrategy::full_shard)
                  .mixed_precision_policy(MixedPrecisionPolicy().param_dtype(torch::kBFloat16))));
          Stack net;
          acc.prepare(net);
        },
        {"param_dtype is BFloat16", "mixed_precision is no"});
    // A policy where no unit is sharded.
    expect_error<std::invalid_argument>(
        [&] {
          check_sharding_options(ShardingOptions()
                                     .strategy(ShardingStrategy::shard_grad_op)
                                     .mixed_precision_policy(MixedPrecisionPolicy().reduce_dtype(torch::kBFloat16)));
        },
        {"reduce_dtype", "shard_grad_op", "full_shard or hybrid_shard"});
    expect_error<std::invalid_argument>(
        [&] {
          check_sharding_options(ShardingOptions()
                                     .strategy(ShardingStrategy::full_shard)
                                     .mixed_precision_policy(MixedPrecisionPolicy().param_dtype(torch::kInt)));
        },
        {"param_dtype is Int", "expected Float, Half or BFloat16"});
  });
}
