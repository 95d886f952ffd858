// Parameter sharding of a model that only the main process holds: the
// other processes build it on the meta device (init_empty_weights, FSDP's
// sync_module_states with cpu_ram_efficient_loading) and prepare gives
// them their shards from the main process, unit by unit. On 2-4 CPU ranks
// over Gloo: the same training as one process, and clear refusals where
// nobody holds the values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/big_model/empty_init.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/fsdp_training.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::unit_stack;
using namespace accel::testing::fsdp_training;

TEST(FullShardMetaInit, OtherRanksBuiltWithoutMemoryTrainAsOneProcess) {
  expect_equals_reference({.clip = 0.05, .meta_init = true});
  expect_equals_reference({.world = 3, .accumulation = 2, .freeze_block = true, .meta_init = true});
  expect_equals_reference({.world = 4, .hybrid_shard_size = 2, .offload_param = true, .meta_init = true});
}

TEST(FullShardMetaInit, PrepareGivesTheMetaParametersTheirShapesAndValues) {
  run_distributed(2, [&] {
    Trainer t({.meta_init = true});
    for (const auto& item : t.net->named_parameters()) {
      EXPECT_FALSE(item.value().is_meta()) << item.key();
      EXPECT_EQ(item.value().device(), torch::Device(torch::kCPU)) << item.key();
    }
    for (const auto& item : t.net->named_buffers()) EXPECT_FALSE(item.value().is_meta()) << item.key();
    EXPECT_EQ(t.net->blocks[1]->fc1->weight.sizes(), (std::vector<int64_t>{16, 8}));
    // The gathered values are the main process's, on every rank.
    std::vector<torch::Tensor> all;
    for (const auto& [name, p] : t.params()) all.push_back(p);
    expect_ranks_agree(all);
  });
}

TEST(FullShardMetaInit, Refusals) {
  run_distributed(2, [&] {
    // Nobody holds the values: the main process built it on meta too.
    expect_error<std::invalid_argument>(
        [&] {
          Accelerator acc(sharded({}));
          auto net = init_empty_weights([] { return Stack(); });
          acc.prepare(net);
        },
        {"'embed.weight' is on the meta device on the main process"});
    // Replicated modes do not fill meta tensors.
    expect_error<std::invalid_argument>(
        [&] {
          Accelerator acc;
          auto net = acc.process_index() == 0 ? Stack() : init_empty_weights([] { return Stack(); });
          acc.prepare(net);
        },
        {"'embed.weight' is on the meta device on process 1; only parameter sharding"});
  });
}
