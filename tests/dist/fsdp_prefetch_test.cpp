// Gathers issued ahead of their need under full_shard
// (ShardingOptions::forward_prefetch, backward_prefetch; Accelerate's
// FSDP_FORWARD_PREFETCH, FSDP_BACKWARD_PREFETCH) on 2-4 CPU ranks over Gloo:
// the same training as one process, the next unit really gathered before
// its turn, and no more gathers than without prefetching.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "accel/accelerator.h"
#include "support/distributed.h"
#include "support/fsdp_training.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::unit_stack;
using namespace accel::testing::fsdp_training;

TEST(FullShardPrefetch, EqualsOneProcess) {
  expect_equals_reference(
      {.clip = 0.05, .backward_prefetch = BackwardPrefetch::backward_pre, .forward_prefetch = true});
  expect_equals_reference({.world = 3, .accumulation = 2, .backward_prefetch = BackwardPrefetch::backward_post});
  // Recomputed blocks run their forward inside backward: no forward prefetch there.
  expect_equals_reference({.accumulation = 2,
                           .checkpoint = true,
                           .backward_prefetch = BackwardPrefetch::backward_pre,
                           .forward_prefetch = true});
  expect_equals_reference({.world = 4,
                           .hybrid_shard_size = 2,
                           .offload_param = true,
                           .backward_prefetch = BackwardPrefetch::backward_pre,
                           .forward_prefetch = true});
}

// When block 0's forward starts, is block 1 gathered; when block 1's
// fc2.weight gradient is ready (the start of its backward), is block 0?
// With max_live_parameters just below the root and two blocks (what a
// forward prefetch would hold), neither prefetch happens; with room for all
// three blocks, both do (in backward, the later block's weight gradients may
// still be accumulating, so it is live when the earlier one is fetched).
TEST(FullShardPrefetch, TheNextUnitIsGatheredBeforeItsTurn) {
  run_distributed(2, [&] {
    int64_t all = 0, two_blocks = 0;  // the root's and three or two blocks' parameters
    {
      Stack net;
      for (const auto& p : net->parameters()) all += p.numel();
      two_blocks = all;
      for (const auto& p : net->blocks[2]->parameters()) two_blocks -= p.numel();
    }
    struct Case {
      bool prefetch;
      int64_t max_live;
      bool expect;
    };
    for (const Case c :
         {Case{false, 0, false}, Case{true, 0, true}, Case{true, two_blocks - 1, false}, Case{true, all, true}}) {
      const bool prefetch = c.expect;
      Trainer t({.backward_prefetch = c.prefetch ? BackwardPrefetch::backward_pre : BackwardPrefetch::none,
                 .forward_prefetch = c.prefetch,
                 .max_live_parameters = c.max_live});
      const auto& units = t.sharding().units();
      std::vector<bool> next_in_forward, next_in_backward;
      t.net->blocks[0]->probe = [&] { next_in_forward.push_back(units[1]->unsharded()); };
      t.net->blocks[1]->fc2->weight.register_hook([&](const torch::Tensor& g) {
        next_in_backward.push_back(units[0]->unsharded());
        return g;
      });
      t.train(3);
      const std::string what = "prefetch " + std::to_string(c.prefetch) + ", bound " + std::to_string(c.max_live);
      // The first forward has no earlier order to predict from.
      EXPECT_EQ(next_in_forward, (std::vector<bool>{false, prefetch, prefetch})) << what;
      EXPECT_EQ(next_in_backward, (std::vector<bool>(3, prefetch))) << what;
      // Ahead, not more: each block once for forward and once for backward per step.
      for (size_t k = 0; k + 1 < units.size(); ++k) EXPECT_EQ(units[k]->gathers(), 3 * 2) << units[k]->path();
      // The root and at most three blocks at once (two without prefetching).
      const auto m = t.sharding().memory();
      const int64_t block = units[0]->unsharded_bytes(), root = units.back()->unsharded_bytes();
      EXPECT_LE(m.peak_unsharded, root + (prefetch ? 3 : 2) * block) << what;
    }
  });
}
