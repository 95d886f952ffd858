// Accelerate's utility names on accel's Accelerator, each checked on 2 ranks
// over Gloo against what Accelerate's rule says they must produce.
#include <chrono>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/util/seed.h"
#include "support/distributed.h"
#include "support/temp_dir.h"

using namespace accel;
using accel::testing::TempDir;

namespace {

DataLoader<TensorDict> numbered_loader(int64_t rows, int64_t batch) {
  auto ids = torch::arange(rows, torch::kLong);
  return make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"id", ids}, {"twice", ids * 2}}),
                          DataLoaderOptions(batch));
}

}  // namespace

TEST(AccelerateNames, SetSeedSeedsEveryRankAndOffsetsByRankWhenAsked) {
  accel::testing::run_distributed(2, [] {
    const int r = state().rank();
    set_seed(42);
    auto a = torch::rand({4});
    const int ra = std::rand();
    set_seed(42);
    EXPECT_TRUE(torch::equal(a, torch::rand({4})));
    EXPECT_EQ(std::rand(), ra);
    // Every rank draws the same numbers...
    auto all = gather(a.unsqueeze(0));
    EXPECT_TRUE(torch::equal(all[0], all[1]));
    // ...unless device_specific: then rank r draws what seed 42 + r gives.
    set_seed(42, /*device_specific=*/true);
    auto b = torch::rand({4});
    torch::manual_seed(42 + r);
    EXPECT_TRUE(torch::equal(b, torch::rand({4})));
    auto both = gather(b.unsqueeze(0));
    EXPECT_FALSE(torch::equal(both[0], both[1]));
  });
}

TEST(AccelerateNames, TriggerSetOnOneRankIsSeenByAll) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc;
    EXPECT_FALSE(acc.check_trigger());
    if (acc.process_index() == 1) acc.set_trigger();
    EXPECT_TRUE(acc.check_trigger());   // every rank sees rank 1's flag
    EXPECT_FALSE(acc.check_trigger());  // and it was cleared
  });
}

TEST(AccelerateNames, MainProcessFirstRunsRankZeroBeforeTheOthers) {
  const TempDir dir("names");  // made here: both ranks use it
  accel::testing::run_distributed(2, [&] {
    Accelerator acc;
    const auto file = dir / "cache";
    {
      auto first = acc.main_process_first();
      if (acc.is_main_process()) {
        // Slow on purpose: rank 1 must still be waiting when this finishes.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        std::ofstream(file) << "built by rank 0";
      } else {
        std::ifstream in(file);
        std::string text;
        std::getline(in, text);
        EXPECT_EQ(text, "built by rank 0");
      }
    }
    acc.wait_for_everyone();
  });
}

TEST(AccelerateNames, SplitBetweenProcessesGivesTheFirstRanksOneMore) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc;
    const int r = acc.process_index();
    std::vector<std::string> prompts = {"a", "b", "c"};
    auto mine = acc.split_between_processes(prompts);
    EXPECT_EQ(mine, r == 0 ? std::vector<std::string>({"a", "b"}) : std::vector<std::string>({"c"}));
    auto padded = acc.split_between_processes(prompts, /*apply_padding=*/true);
    EXPECT_EQ(padded, r == 0 ? std::vector<std::string>({"a", "b"}) : std::vector<std::string>({"c", "c"}));
    auto rows = acc.split_between_processes(torch::arange(5));
    EXPECT_TRUE(torch::equal(rows, r == 0 ? torch::arange(0, 3) : torch::arange(3, 5)));
  });
}

TEST(AccelerateNames, GatherForMetricsOnADictDropsTheRepeatsLikeOnATensor) {
  // 10 rows, 2 ranks x 3: the last global batch of 6 holds 4 real rows.
  accel::testing::run_distributed(2, [] {
    Accelerator acc;
    auto loader = acc.prepare(numbered_loader(10, 3));
    std::vector<torch::Tensor> ids, twice;
    for (auto& batch : loader) {
      auto got = acc.gather_for_metrics(batch);
      EXPECT_TRUE(torch::equal(got.at("id"), acc.gather_for_metrics(batch.at("id"))));
      ids.push_back(got.at("id"));
      twice.push_back(got.at("twice"));
    }
    EXPECT_TRUE(torch::equal(torch::cat(ids), torch::arange(10)));
    EXPECT_TRUE(torch::equal(torch::cat(twice), torch::arange(10) * 2));
  });
}

TEST(AccelerateNames, SkipFirstBatchesResumesMidEpochThenPassesWhole) {
  accel::testing::run_distributed(2, [] {
    Accelerator acc;
    auto loader = acc.prepare(numbered_loader(16, 2));  // 4 batches per rank
    std::vector<torch::Tensor> whole;
    for (auto& b : loader) whole.push_back(b.at("id"));
    auto skipped = acc.skip_first_batches(loader, 3);
    std::vector<torch::Tensor> rest;
    for (auto& b : skipped) rest.push_back(b.at("id"));
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_TRUE(torch::equal(rest[0], whole[3]));
    int64_t second_pass = 0;
    for (auto& b : skipped) second_pass += b.at("id").size(0) > 0;
    EXPECT_EQ(second_pass, 4);
  });
}

TEST(AccelerateNames, SaveModelWritesTheUnwrappedWeightsOnce) {
  const TempDir dir("names");
  accel::testing::run_distributed(2, [&] {
    Accelerator acc;
    accel::testing::seed_cpu(1 + acc.process_index());  // prepare broadcasts rank 0's weights
    torch::nn::Sequential net(torch::nn::Linear(3, 4), torch::nn::ReLU(), torch::nn::Linear(4, 1));
    auto model = acc.prepare(net);
    EXPECT_EQ(acc.unwrap_model(model).ptr(), net.ptr());
    auto state = acc.get_state_dict(model);
    ASSERT_EQ(state.size(), 4u);
    EXPECT_EQ(state[0].first, "0.weight");
    EXPECT_TRUE(torch::equal(state[0].second, net->named_parameters()["0.weight"]));
    acc.save_model(model, dir);
    acc.wait_for_everyone();
    auto saved = safetensors::load_file(dir / "model.safetensors");
    ASSERT_EQ(saved.size(), 4u);
    for (auto& item : net->named_parameters()) EXPECT_TRUE(torch::equal(saved[item.key()], item.value()));
    acc.wait_for_everyone();
  });
}
