// Parameter sharding (ShardingStrategy::full_shard, hybrid_shard) on 2, 3
// and 4 CPU ranks over Gloo, on a stack of units (support/unit_stack.h).
// Each variant trains to the same parameters as one process of plain
// LibTorch on the full batch (which DDP equals): with accumulation and
// clipping, without resharding after forward, with a frozen block, with
// every parameter in the root unit, hybrid on 4 ranks as 2 x 2. Then the
// memory each rank holds (1/N of the parameters and gradients, at most the
// root and two units gathered), save_state and load_state resuming
// exactly, and the refusals.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <optional>

#include "accel/accelerator.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/fsdp_training.h"
#include "support/temp_dir.h"
#include "support/tensors.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::unit_stack;
using namespace accel::testing::fsdp_training;
namespace F = torch::nn::functional;

TEST(FullShard, AdamWEqualsOneProcess) { expect_equals_reference({}); }

TEST(FullShard, AccumulationAndClippingOnThreeRanksEqualOneProcess) {
  expect_equals_reference({.world = 3, .accumulation = 2, .clip = 0.05});
}

TEST(FullShard, WithoutReshardAfterForwardEqualsOneProcess) {
  expect_equals_reference({.accumulation = 2, .reshard_after_forward = false});
}

// reshard_after_forward as an int: after forward each rank keeps half of
// each unit, gathered again before backward with its neighbour only.
TEST(FullShard, SlicesKeptAfterForwardEqualOneProcess) {
  expect_equals_reference({.world = 4, .accumulation = 2, .clip = 0.05, .reshard_slices = 2});
  expect_equals_reference({.world = 4, .reshard_slices = 2, .offload_param = true, .checkpoint = true});
  expect_equals_reference({.world = 4, .reshard_slices = 4});  // the whole group: as true
  expect_equals_reference({.world = 4, .reshard_slices = 1});  // one rank: as false
}

TEST(FullShard, SlicesAreKeptBetweenForwardAndBackwardAndGatheredInsideTheirRun) {
  run_distributed(4, [&] {
    Trainer t({.world = 4, .reshard_slices = 2});
    t.train(2);
    const auto& units = t.sharding().units();
    ASSERT_EQ(units.size(), 4u);  // three blocks and the root
    for (size_t k = 0; k + 1 < units.size(); ++k) {
      EXPECT_EQ(units[k]->gathers(), 2 * 2) << units[k]->path();    // before forward, before backward
      EXPECT_EQ(units[k]->slice_gathers(), 2) << units[k]->path();  // that one from the slices
      EXPECT_EQ(units[k]->kept_slice_bytes(), 0);                   // nothing left after backward
    }
    EXPECT_EQ(units.back()->slice_gathers(), 0);  // the root stays gathered from forward to backward
    const int64_t mine = t.acc.process_index() * kRows;
    auto loss = F::cross_entropy((*t.model)(features().narrow(0, mine, kRows)), labels().narrow(0, mine, kRows));
    for (size_t k = 0; k + 1 < units.size(); ++k) {
      EXPECT_FALSE(units[k]->unsharded());
      EXPECT_EQ(units[k]->kept_slice_bytes() * 2, units[k]->unsharded_bytes()) << units[k]->path();
    }
    t.acc.backward(loss);
    t.optimizer->zero_grad();
    {  // Without gradients no backward follows: nothing is kept.
      torch::NoGradGuard no_grad;
      (*t.model)(features().narrow(0, mine, kRows));
    }
    for (size_t k = 0; k + 1 < units.size(); ++k) EXPECT_EQ(units[k]->kept_slice_bytes(), 0);
  });
  run_distributed(4, [&] {
    expect_error<std::invalid_argument>([&] { Trainer t({.world = 4, .reshard_slices = 3}); },
                                        {"reshard_after_forward is 3", "divisor of the 4 ranks"});
  });
}

TEST(FullShard, FrozenBlockNormEqualsOneProcess) { expect_equals_reference({.world = 3, .freeze_block = true}); }

TEST(FullShard, EverythingInTheRootUnitEqualsOneProcess) {
  expect_equals_reference({.clip = 0.05, .policy = WrapPolicy::no_wrap});
  expect_equals_reference({.policy = WrapPolicy::size_based});
}

// Four ranks as two nodes of two: shard within each pair, replicate across.
TEST(HybridShard, TwoGroupsOfTwoEqualOneProcess) {
  expect_equals_reference({.world = 4, .clip = 0.05, .hybrid_shard_size = 2});
  // HYBRID_SHARD_ZERO2: the parameters kept from forward to backward.
  expect_equals_reference({.world = 4, .accumulation = 2, .reshard_after_forward = false, .hybrid_shard_size = 2});
}

// Offload: the shards, their gradients and the optimizer state in host
// memory (on these CPU ranks, separate buffers from those the gathers fill).
TEST(FullShard, OffloadedShardsEqualOneProcess) {
  expect_equals_reference({.accumulation = 2, .clip = 0.05, .offload_param = true});
  expect_equals_reference({.world = 3, .freeze_block = true, .offload_optimizer = true});
  expect_equals_reference({.clip = 0.05, .offload_param = true, .sgd = true});  // stepped by SGD's own step()
  expect_equals_reference({.world = 4, .clip = 0.05, .hybrid_shard_size = 2, .offload_param = true});
}

// Each block recomputed in backward, inside the gather its backward needs.
TEST(FullShard, ActivationCheckpointingEqualsOneProcess) {
  expect_equals_reference({.accumulation = 2, .clip = 0.05, .checkpoint = true});
  expect_equals_reference({.world = 3, .freeze_block = true, .offload_param = true, .checkpoint = true});
  expect_equals_reference({.world = 4, .reshard_after_forward = false, .hybrid_shard_size = 2, .checkpoint = true});
}

TEST(ShardGradOp, ActivationCheckpointingAtUnitsEqualsOneProcess) {
  expect_equals_reference({.accumulation = 2, .clip = 0.05, .checkpoint = true, .zero2 = true});
  run_distributed(2, [&] {
    Trainer t({.checkpoint = true, .zero2 = true});
    t.train(2);
    for (const auto& block : t.net->blocks) EXPECT_EQ(block->forwards, 2 * 2);  // forward, then again in backward
    Trainer plain({.zero2 = true});
    plain.train(2);
    for (const auto& block : plain.net->blocks) EXPECT_EQ(block->forwards, 2);
  });
}

TEST(FullShard, CheckpointedBlocksGatherOncePerForwardAndBackward) {
  run_distributed(2, [&] {
    Trainer t({.checkpoint = true});
    t.train(3);
    const auto& units = t.sharding().units();
    for (size_t k = 0; k + 1 < units.size(); ++k) EXPECT_EQ(units[k]->gathers(), 3 * 2) << units[k]->path();
    EXPECT_EQ(units.back()->gathers(), 3);  // the root: once per step
  });
}

TEST(FullShard, OffloadedShardsLiveInHostMemory) {
  for (bool params : {true, false}) {
    run_distributed(2, [&] {
      Trainer t({.offload_optimizer = true, .offload_param = params});
      t.train(1);
      const auto m = t.sharding().memory();
      EXPECT_EQ(m.host, m.full);  // shards and gradient shards: 1/2 each of the padded total
      // Only the copy the gathers read, 1/2 of the parameters, stays on the device without offload_param.
      EXPECT_EQ(m.shards, params ? 0 : m.full / 2);
      EXPECT_EQ(m.unsharded, 0);
    });
  }
}

TEST(HybridShard, EachRankHoldsHalfAndGroupsThatDoNotDivideTheWorldAreRefused) {
  run_distributed(4, [&] {
    Trainer t({.world = 4, .hybrid_shard_size = 2});
    const auto m = t.sharding().memory();
    EXPECT_EQ(m.shards * 2, 2 * m.full);  // split in two, not four
    EXPECT_EQ(t.sharding().process_group()->getSize(), 2);
  });
  run_distributed(4, [&] {
    expect_error<std::invalid_argument>([&] { Trainer t({.world = 4, .hybrid_shard_size = 3}); },
                                        {"shard groups of 3 ranks", "hybrid_shard_size", "4 ranks"});
  });
}

TEST(FullShard, EachRankHoldsItsShareAndFewUnitsGatheredAtOnce) {
  for (bool reshard : {true, false}) {
    run_distributed(2, [&] {
      Trainer t({.reshard_after_forward = reshard});
      const auto& units = t.sharding().units();
      ASSERT_EQ(units.size(), 4u);  // three blocks and the root
      auto before = t.sharding().memory();
      EXPECT_EQ(before.unsharded, 0);
      // Parameters and gradients: each rank keeps exactly 1/2 of the padded total.
      EXPECT_EQ(before.shards * 2, 2 * before.full);
      t.train(2);
      const auto m = t.sharding().memory();
      EXPECT_EQ(m.unsharded, 0);  // nothing left gathered after the steps
      int64_t root = units.back()->unsharded_bytes(), largest = 0;
      for (size_t k = 0; k + 1 < units.size(); ++k) largest = std::max(largest, units[k]->unsharded_bytes());
      if (reshard) {
        EXPECT_LE(m.peak_unsharded, root + 2 * largest);
        EXPECT_LT(m.peak_unsharded, m.full);
      } else {
        EXPECT_EQ(m.peak_unsharded, m.full);  // every block kept from its forward to its backward
      }
      // The model's parameters hold no memory between steps, yet keep their shapes.
      for (const auto& p : t.net->parameters()) EXPECT_EQ(p.storage().nbytes(), 0u);
      EXPECT_EQ(t.net->blocks[0]->fc1->weight.sizes().vec(), (std::vector<int64_t>{16, 8}));
    });
  }
}

TEST(FullShard, SaveAndLoadStateResumesExactly) {
  TempDir dir;
  run_distributed(2, [&] {
    const Variant v{.accumulation = 2};
    Trainer straight(v);
    straight.train(2);
    straight.acc.save_state(dir.path() / "ckpt");
    straight.train(2);
    const auto want = straight.params();

    Trainer resumed(v);
    resumed.acc.load_state(dir.path() / "ckpt");
    resumed.first = straight.first / 2;  // the same rows as the second half
    resumed.train(2);
    EXPECT_EQ(max_diff(resumed.params(), want), 0.0);
  });
  // The model file holds the whole model, by its names.
  auto saved = safetensors::load_file(dir.path() / "ckpt" / "model.safetensors");
  EXPECT_NE(saved.find("h.1.fc2.weight"), nullptr);
  EXPECT_EQ(saved.find("h.1.fc2.weight")->sizes().vec(), (std::vector<int64_t>{8, 16}));
}

TEST(FullShard, ModelFilesHoldTheWholeModel) {
  TempDir dir;
  run_distributed(2, [&] {
    Trainer t({});
    t.train(1);
    const auto want = t.params();
    t.acc.save_model(*t.model, dir.path() / "model");
    std::map<std::string, torch::Tensor> got;
    for (auto& [name, tensor] :
         safetensors::to_named(safetensors::load_file(dir.path() / "model" / "model.safetensors")))
      got[name] = tensor;
    EXPECT_EQ(max_diff(got, want), 0.0);
  });
}

TEST(FullShard, Refusals) {
  run_distributed(2, [&] {
    // A class name the model has no unit of.
    expect_error<std::invalid_argument>(
        [&] {
          Accelerator acc(AcceleratorOptions().sharding(
              ShardingOptions().strategy(ShardingStrategy::full_shard).transformer_cls_to_wrap({"GPT2Block"})));
          Stack net;
          acc.prepare(net);
        },
        {"'GPT2Block'", "StackBlock"});
    // An optimizer over parameters of no prepared model.
    expect_error<std::invalid_argument>(
        [&] {
          Accelerator acc(AcceleratorOptions().sharding(ShardingOptions().strategy(ShardingStrategy::full_shard)));
          Stack net, other;
          auto model = acc.prepare(net);
          acc.prepare(make_optimizer(other));
        },
        {"in no prepared model"});
  });
}
