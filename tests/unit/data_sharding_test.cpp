// Sharding rules: the issue's examples verbatim, then a grid checked
// against the global-view reference in data_reference.h.
#include <gtest/gtest.h>

#include "accel/data/batch_sampler_shard.h"
#include "accel/data/iterable_dataset_shard.h"
#include "accel/data/sampler.h"
#include "support/errors.h"
#include "unit/data_reference.h"

using namespace accel;
using accel::testing::expect_error;
using accel::testing::RowBatches;
using accel::testing::Rows;

namespace {

std::shared_ptr<BatchSampler> sequential_batches(int64_t n, int64_t bs, bool drop_last) {
  return std::make_shared<BatchSampler>(std::make_shared<SequentialSampler>(n), bs, drop_last);
}

IndexBatches shard(int64_t n, int64_t bs, bool drop_last, int P, int p, bool split, bool even) {
  return BatchSamplerShard(sequential_batches(n, bs, drop_last), P, p, split, even).batches(0);
}

std::shared_ptr<IterableDataset<int64_t>> counting(int64_t n) {
  return std::make_shared<LambdaIterableDataset<int64_t>>(
      [n](int64_t) {
        return ExampleStream<int64_t>([i = int64_t{0}, n]() mutable -> std::optional<int64_t> {
          if (i >= n) return std::nullopt;
          return i++;
        });
      },
      n);
}

Rows drain(const IterableDataset<int64_t>& ds) {
  Rows out;
  auto s = ds.open(0);
  while (auto e = s()) out.push_back(*e);
  return out;
}

Rows iterable_shard(int64_t n, int64_t bs, bool drop_last, int P, int p, bool split) {
  return drain(IterableDatasetShard<int64_t>(counting(n), bs, drop_last, P, p, split));
}

}  // namespace

TEST(DataShardIssueExamples, TwentyTwoSamplesEvenBatches) {
  EXPECT_EQ(shard(22, 3, false, 2, 0, false, true), (IndexBatches{{0, 1, 2}, {6, 7, 8}, {12, 13, 14}, {18, 19, 20}}));
  EXPECT_EQ(shard(22, 3, false, 2, 1, false, true), (IndexBatches{{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {21, 0, 1}}));
}

TEST(DataShardIssueExamples, TwentyTwoSamplesUnevenBatches) {
  EXPECT_EQ(shard(22, 3, false, 2, 0, false, false), (IndexBatches{{0, 1, 2}, {6, 7, 8}, {12, 13, 14}, {18, 19, 20}}));
  EXPECT_EQ(shard(22, 3, false, 2, 1, false, false), (IndexBatches{{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {21}}));
}

TEST(DataShardIssueExamples, TwentyOneSamplesDropLast) {
  for (bool even : {true, false}) {
    EXPECT_EQ(shard(21, 3, true, 2, 0, false, even), (IndexBatches{{0, 1, 2}, {6, 7, 8}, {12, 13, 14}}));
    EXPECT_EQ(shard(21, 3, true, 2, 1, false, even), (IndexBatches{{3, 4, 5}, {9, 10, 11}, {15, 16, 17}}));
  }
}

TEST(DataShardIssueExamples, IterableSevenSamples) {
  EXPECT_EQ(iterable_shard(7, 2, false, 2, 0, false), (Rows{0, 1, 4, 5}));
  EXPECT_EQ(iterable_shard(7, 2, false, 2, 1, false), (Rows{2, 3, 6, 0}));
  EXPECT_EQ(iterable_shard(7, 2, false, 2, 0, true), (Rows{0, 2, 4, 6}));
  EXPECT_EQ(iterable_shard(7, 2, false, 2, 1, true), (Rows{1, 3, 5, 0}));
  EXPECT_EQ(iterable_shard(7, 2, true, 2, 0, false), (Rows{0, 1}));
  EXPECT_EQ(iterable_shard(7, 2, true, 2, 1, false), (Rows{2, 3}));
}

// Sizes 0, 1, fewer samples than ranks, exact multiples and one over them,
// for batch sizes 1-4, 1-4 ranks, every flag combination.
TEST(DataShardGrid, BatchSamplerShardMatchesReference) {
  int checked = 0;
  for (int P = 1; P <= 4; ++P)
    for (int64_t bs = 1; bs <= 4; ++bs)
      for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{P - 1}, bs * P, bs * P + 1, 2 * bs * P, 2 * bs * P + 1,
                        int64_t{22}, int64_t{23}})
        for (bool split : {false, true})
          for (bool even : {false, true})
            for (bool drop : {false, true}) {
              if (n < 0 || (split && bs % P != 0)) continue;
              Rows order;
              for (int64_t i = 0; i < n; ++i) order.push_back(i);
              int64_t total = 0;
              for (int p = 0; p < P; ++p) {
                SCOPED_TRACE(::testing::Message() << "n=" << n << " bs=" << bs << " P=" << P << " p=" << p
                                                  << " split=" << split << " even=" << even << " drop=" << drop);
                BatchSamplerShard s(sequential_batches(n, bs, drop), P, p, split, even);
                auto got = s.batches(0);
                EXPECT_EQ(got, accel::testing::expected_batch_shard(order, bs, drop, P, p, split, even));
                const int64_t inner = s.inner()->size();
                // Accelerate's length counts the short last batch on every rank here.
                if (split && !even && !drop && n % bs != 0)
                  EXPECT_EQ(s.size(), inner);
                else
                  EXPECT_EQ(s.size(), static_cast<int64_t>(got.size()));
                total += got.size();
                ++checked;
              }
              // even_batches: every rank the same count.
              if (even && !split) {
                EXPECT_EQ(total % P, 0);
              }
            }
  EXPECT_GT(checked, 1000);
}

TEST(DataShardGrid, IterableDatasetShardMatchesReference) {
  for (int P = 1; P <= 4; ++P)
    for (int64_t bs = 1; bs <= 4; ++bs)
      for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{P - 1}, bs * P, bs * P + 1, 2 * bs * P + 1, int64_t{23}})
        for (bool split : {false, true})
          for (bool drop : {false, true}) {
            if (split && bs % P != 0) continue;
            for (int p = 0; p < P; ++p) {
              SCOPED_TRACE(::testing::Message() << "n=" << n << " bs=" << bs << " P=" << P << " p=" << p
                                                << " split=" << split << " drop=" << drop);
              IterableDatasetShard<int64_t> s(counting(n), bs, drop, P, p, split);
              auto got = drain(s);
              EXPECT_EQ(got, accel::testing::expected_iterable_shard(n, bs, drop, P, p, split));
              EXPECT_EQ(s.size().value(), static_cast<int64_t>(got.size()));
            }
          }
}

TEST(DataShard, VaryingBatchesWithoutBatchSizeCycleWholeBatches) {
  // A batch sampler without a fixed size: the last round is completed with
  // whole batches from the start.
  struct Fixed : BatchSamplerBase {
    IndexBatches b{{0}, {1, 2}, {3, 4, 5}};
    int64_t size() const override { return 3; }
    IndexBatches batches(int64_t) const override { return b; }
  };
  auto inner = std::make_shared<Fixed>();
  EXPECT_EQ(BatchSamplerShard(inner, 2, 0).batches(0), (IndexBatches{{0}, {3, 4, 5}}));
  EXPECT_EQ(BatchSamplerShard(inner, 2, 1).batches(0), (IndexBatches{{1, 2}, {0}}));
  EXPECT_EQ(BatchSamplerShard(inner, 2, 1, false, false).batches(0), (IndexBatches{{1, 2}}));
}

TEST(DataShard, RejectsBadArguments) {
  auto inner = sequential_batches(10, 3, false);
  expect_error<std::invalid_argument>([&] { BatchSamplerShard(inner, 2, 0, true, true); }, {"batch size (3)"});
  EXPECT_THROW(BatchSamplerShard(inner, 2, 2), std::invalid_argument);
  EXPECT_THROW(BatchSamplerShard(inner, 0, 0), std::invalid_argument);
  EXPECT_THROW(IterableDatasetShard<int64_t>(counting(4), 3, false, 2, 0, true), std::invalid_argument);
  EXPECT_THROW(BatchSampler(std::make_shared<SequentialSampler>(3), 0, false), std::invalid_argument);
}

TEST(DataSampler, SeedableRandomSamplerFollowsSeedPlusEpoch) {
  SeedableRandomSampler a(50, 5), b(50, 7), c(50, 5);
  EXPECT_EQ(a.indices(2), b.indices(0));  // the generator sees only seed + epoch
  EXPECT_EQ(a.indices(1), c.indices(1));
  EXPECT_NE(a.indices(0), a.indices(1));
  auto perm = a.indices(3);
  std::sort(perm.begin(), perm.end());
  Rows want(50);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(perm, want);
  a.set_epoch(4);
  EXPECT_EQ(a.indices(), c.indices(4));
  // A permutation seeded on a fresh generator, independent of the global one.
  torch::manual_seed(123);
  auto before = seeded_permutation(20, 9);
  torch::rand({100});
  EXPECT_EQ(before, seeded_permutation(20, 9));
  EXPECT_EQ(default_initial_seed(), 123u);
}
