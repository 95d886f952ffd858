// Prepared loaders on real process groups (Gloo on loopback): every rank's
// share, gathered with gather_for_metrics, is the dataset once, in order;
// dispatch_batches; the shuffle seed agreed across ranks; resume.
#include <numeric>

#include <gtest/gtest.h>

#include "accel/data/data_loader.h"
#include "accel/data/metrics.h"
#include "accel/data/prepare.h"
#include "accel/state.h"
#include "support/distributed.h"
#include "support/tensors.h"

using namespace accel;

namespace {

using Rows = std::vector<int64_t>;
using accel::testing::int64_values;

auto rows(int64_t n) {
  return make_dataset(n, [](int64_t i) {
    return TensorDict{{"id", torch::tensor(i)}, {"x", torch::full({3}, double(i))}};
  });
}

auto stream(int64_t n) {
  return std::make_shared<LambdaIterableDataset<TensorDict>>(
      [n](int64_t) {
        return ExampleStream<TensorDict>([i = int64_t{0}, n]() mutable -> std::optional<TensorDict> {
          if (i >= n) return std::nullopt;
          const int64_t v = i++;
          return TensorDict{{"id", torch::tensor(v)}, {"x", torch::full({3}, double(v))}};
        });
      },
      n);
}

Rows arange(int64_t n) {
  Rows r(n);
  std::iota(r.begin(), r.end(), 0);
  return r;
}

// Gathers ids over a pass; checks the batch count against size().
Rows gathered_ids(DataLoader<TensorDict>& loader) {
  Rows seen;
  int64_t steps = 0;
  for (auto& batch : loader) {
    auto got = gather_for_metrics(batch, loader);
    EXPECT_TRUE(got["x"].select(1, 0).to(torch::kInt64).equal(got["id"]));
    auto r = int64_values(got["id"]);
    seen.insert(seen.end(), r.begin(), r.end());
    ++steps;
  }
  if (loader.size() >= 0) {
    EXPECT_EQ(steps, loader.size());
  }
  return seen;
}

void check_every_sample_once_in_order() {
  for (int64_t n : {1, 2, 5, 7, 22, 23}) {
    for (int64_t bs : {1, 2, 3, 6}) {
      const int P = state().world_size();
      for (bool split : {false, true}) {
        if (split && bs % P != 0) continue;
        SCOPED_TRACE(::testing::Message() << "n=" << n << " bs=" << bs << " split=" << split);
        auto opts = PrepareOptions().split_batches(split);
        auto map = prepare_data_loader(make_data_loader(rows(n), DataLoaderOptions(bs)), opts);
        EXPECT_EQ(gathered_ids(map), arange(n)) << "map-style";
        auto map_dispatch = prepare_data_loader(make_data_loader(rows(n), DataLoaderOptions(bs)),
                                                PrepareOptions(opts).dispatch_batches(true));
        EXPECT_EQ(gathered_ids(map_dispatch), arange(n)) << "map-style, dispatched";
        auto it = prepare_data_loader(make_data_loader(stream(n), DataLoaderOptions(bs).num_workers(1)), opts);
        EXPECT_EQ(gathered_ids(it), arange(n)) << "iterable, dispatched (the default)";
        auto it_shard = prepare_data_loader(make_data_loader(stream(n), DataLoaderOptions(bs)),
                                            PrepareOptions(opts).dispatch_batches(false));
        EXPECT_EQ(gathered_ids(it_shard), arange(n)) << "iterable, sharded";
      }
    }
  }
}

}  // namespace

TEST(DataDist, GatherForMetricsReturnsEverySampleOnceTwoRanks) {
  accel::testing::run_distributed(2, check_every_sample_once_in_order);
}

TEST(DataDist, GatherForMetricsReturnsEverySampleOnceThreeRanks) {
  accel::testing::run_distributed(3, check_every_sample_once_in_order);
}

TEST(DataDist, DispatchGivesAccelerateSlices) {
  // 22 rows, batch 3, 2 ranks: rank 0 reads batches in pairs, joins them
  // (6 rows) and each rank keeps 3; the last pair is [18..20] + [21]: 4
  // rows, 2 each.
  accel::testing::run_distributed(2, [] {
    auto loader = prepare_data_loader(make_data_loader(stream(22), DataLoaderOptions(3)));
    std::vector<Rows> got;
    for (auto& b : loader) got.push_back(int64_values(b["id"]));
    const int r = state().rank();
    std::vector<Rows> want = r == 0 ? std::vector<Rows>{{0, 1, 2}, {6, 7, 8}, {12, 13, 14}, {18, 19}}
                                    : std::vector<Rows>{{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {20, 21}};
    EXPECT_EQ(got, want);
    EXPECT_EQ(loader.remainder(), 4);
  });
}

TEST(DataDist, ShuffleSeedIsAgreedAndResumeContinues) {
  accel::testing::run_distributed(2, [] {
    // Different global seeds per rank: prepare must still give one order.
    torch::manual_seed(100 + state().rank());
    auto make = [] { return prepare_data_loader(make_data_loader(rows(23), DataLoaderOptions(2).shuffle(true))); };
    auto loader = make();
    Rows all = gathered_ids(loader);
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, arange(23));

    for (bool dispatch : {false, true}) {
      auto mk = [&] {
        return prepare_data_loader(make_data_loader(rows(23), DataLoaderOptions(2).shuffle(true).seed(7)),
                                   PrepareOptions().dispatch_batches(dispatch));
      };
      auto whole = mk();
      std::vector<Rows> want;
      for (int e = 0; e < 2; ++e)
        for (auto& b : whole) want.push_back(int64_values(b["id"]));
      auto first = mk();
      std::vector<Rows> got;
      std::string saved;
      for (auto& b : first) {
        got.push_back(int64_values(b["id"]));
        saved = first.state().to_string();
        if (got.size() == 4) break;
      }
      auto resumed = prepare_data_loader(make_data_loader(rows(23), DataLoaderOptions(2).shuffle(true).seed(1)),
                                         PrepareOptions().dispatch_batches(dispatch).seed(1));
      resumed.load_state(LoaderState::from_string(saved));
      for (int e = 0; e < 2; ++e)
        for (auto& b : resumed) got.push_back(int64_values(b["id"]));
      EXPECT_EQ(got, want) << "dispatch=" << dispatch;
    }
  });
}
