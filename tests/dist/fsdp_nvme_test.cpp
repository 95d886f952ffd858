// Parameter sharding with the optimizer state on NVMe (offload_optimizer
// device nvme under full_shard, DeepSpeed ZeRO-3 / ZeRO-Infinity's
// optimizer offload) on 2 and 3 CPU ranks over Gloo: it trains as one
// process of plain LibTorch does, bit for bit as the state in host memory
// does, the state's memory is the files' (mapped), they are gone with the
// optimizer, checkpoints resume exactly in either mode, and what cannot be
// paged is refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "accel/accelerator.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/fsdp_training.h"
#include "support/mapped_files.h"
#include "support/temp_dir.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::unit_stack;
using namespace accel::testing::fsdp_training;

namespace {

// The optimizer's state tensors, parameter by parameter, field by field.
std::vector<torch::Tensor> state_tensors(torch::optim::Optimizer& optimizer) {
  std::vector<torch::Tensor> out;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) {
      auto it = optimizer.state().find(p.unsafeGetTensorImpl());
      if (it == optimizer.state().end()) continue;
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      out.push_back(st.exp_avg());
      out.push_back(st.exp_avg_sq());
    }
  return out;
}

}  // namespace

TEST(FullShardNvme, OptimizerStateOnNvmeEqualsOneProcess) {
  TempDir dir;
  expect_equals_reference({.accumulation = 2, .clip = 0.05, .nvme_path = dir.path() / "swap"});
  expect_equals_reference({.world = 3, .freeze_block = true, .offload_param = true, .nvme_path = dir.path() / "swap"});
  EXPECT_EQ(files_in(dir.path() / "swap"), 0u);  // scratch: gone with the optimizers
}

TEST(FullShardNvme, StateLivesInItsFilesAndEqualsHostStateBitForBit) {
  TempDir dir;
  const auto swap = dir.path() / "swap";
  run_distributed(2, [&] {
    Trainer host({.clip = 0.05, .offload_optimizer = true});
    host.train(3);
    {
      Trainer paged({.clip = 0.05, .nvme_path = swap});
      paged.train(3);
      paged.acc.wait_for_everyone();  // the last update is done
      EXPECT_EQ(max_diff(paged.params(), host.params()), 0.0);
      host.acc.wait_for_everyone();
      const auto want = state_tensors(host.optimizer->optimizer());
      const auto got = state_tensors(paged.optimizer->optimizer());
      ASSERT_EQ(got.size(), want.size());
      ASSERT_GT(got.size(), 0u);
      const auto maps = mappings_under(swap);
      EXPECT_EQ(maps.size(), paged.sharding().units().size());  // a file per unit
      for (size_t k = 0; k < got.size(); ++k) {
        EXPECT_TRUE(torch::equal(got[k], want[k])) << "state tensor " << k;
        if (got[k].numel() == 0) continue;
        EXPECT_TRUE(in_a_mapping(got[k], maps)) << "state tensor " << k << " is not in a file under " << swap;
      }
    }
    EXPECT_TRUE(mappings_under(swap).empty());
  });
  EXPECT_EQ(files_in(swap), 0u);
}

// save_state writes the paged state as any other; load_state puts it back
// into the files (or into host memory, for a run that does not page).
TEST(FullShardNvme, SaveAndLoadStateResumeExactlyEitherWay) {
  TempDir dir;
  const auto swap = dir.path() / "swap";
  run_distributed(2, [&] {
    const Variant paged{.accumulation = 2, .clip = 0.05, .nvme_path = swap};
    Trainer straight(paged);
    straight.train(2);
    straight.acc.save_state(dir.path() / "ckpt");
    straight.train(2);
    const auto want = straight.params();
    for (const Variant& v : {paged, Variant{.accumulation = 2, .clip = 0.05, .offload_optimizer = true}}) {
      Trainer resumed(v);
      resumed.acc.load_state(dir.path() / "ckpt");
      resumed.first = straight.first / 2;  // the same rows as the second half
      resumed.train(2);
      EXPECT_EQ(max_diff(resumed.params(), want), 0.0) << (v.nvme_path.empty() ? "host state" : "paged state");
      if (!v.nvme_path.empty()) {
        const auto maps = mappings_under(swap);
        for (const auto& t : state_tensors(resumed.optimizer->optimizer())) {
          if (t.numel() == 0) continue;
          EXPECT_TRUE(in_a_mapping(t, maps)) << "a loaded state tensor stayed in host memory";
        }
      }
    }
  });
}

TEST(FullShardNvme, Refusals) {
  TempDir dir;
  std::ofstream(dir.path() / "file") << "x";
  run_distributed(2, [&] {
    // SGD's momentum is not paged: CPU Adam is what steps the files.
    expect_error<std::invalid_argument>(
        [&] {
          Accelerator acc(sharded({.nvme_path = dir.path() / "swap"}));
          Stack net;
          acc.prepare(net, make_optimizer(net, /*sgd=*/true));
        },
        {"nvme", "neither Adam nor AdamW"});
    // A folder that cannot be made: a file stands where it would be.
    expect_error<std::runtime_error>(
        [&] {
          Accelerator acc(sharded({.nvme_path = dir.path() / "file" / "swap"}));
          Stack net;
          acc.prepare(net, make_optimizer(net));
        },
        {(dir.path() / "file" / "swap").string()});
  });
}
