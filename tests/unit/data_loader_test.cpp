// The loader: collation, options, workers, sharded loading through
// prepare_data_loader (ranks simulated in one process), gather_for_metrics'
// rule, resume.
#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "accel/data/data_loader.h"
#include "accel/data/metrics.h"
#include "accel/data/prepare.h"
#include "support/errors.h"
#include "support/tensors.h"
#include "unit/data_reference.h"

using namespace accel;
using accel::testing::error_of;
using accel::testing::expect_error;
using accel::testing::int64_values;
using accel::testing::RowBatches;
using accel::testing::Rows;

namespace {

// get(i) is the row i itself, so a batch shows the indices it was read from.
auto rows(int64_t n) {
  return make_dataset(n, [](int64_t i) { return torch::tensor(i, torch::kInt64); });
}

std::shared_ptr<LambdaIterableDataset<torch::Tensor>> stream(int64_t n, bool sized = true) {
  return std::make_shared<LambdaIterableDataset<torch::Tensor>>(
      [n](int64_t epoch) {
        // Each epoch's stream differs (offset by 1000 * epoch), so epochs can be told apart.
        return ExampleStream<torch::Tensor>([i = int64_t{0}, n, epoch]() mutable -> std::optional<torch::Tensor> {
          if (i >= n) return std::nullopt;
          return torch::tensor(1000 * epoch + i++, torch::kInt64);
        });
      },
      sized ? std::optional<int64_t>(n) : std::nullopt);
}

template <class Loader>
RowBatches run_epoch(Loader& loader) {
  RowBatches out;
  for (auto& b : loader) out.push_back(int64_values(b));
  return out;
}

Rows flatten(const RowBatches& bs) {
  Rows out;
  for (auto& b : bs) out.insert(out.end(), b.begin(), b.end());
  return out;
}

PrepareOptions rank_of(int P, int p) { return PrepareOptions().num_processes(P).process_index(p); }

}  // namespace

TEST(DataCollate, TensorsDictsNumbersAndUserTypes) {
  auto t = default_collate(std::vector<torch::Tensor>{torch::ones({2}), torch::zeros({2})});
  EXPECT_TRUE(t.equal(torch::tensor({{1.f, 1.f}, {0.f, 0.f}})));
  auto d = default_collate(std::vector<TensorDict>{{{"x", torch::tensor(1)}, {"y", torch::tensor(2)}},
                                                   {{"x", torch::tensor(3)}, {"y", torch::tensor(4)}}});
  EXPECT_TRUE(d["x"].equal(torch::tensor({1, 3})));
  EXPECT_TRUE(d["y"].equal(torch::tensor({2, 4})));
  EXPECT_THROW(default_collate(std::vector<TensorDict>{{{"x", torch::tensor(1)}}, {{"z", torch::tensor(1)}}}),
               std::invalid_argument);
  EXPECT_TRUE(default_collate(std::vector<int64_t>{4, 5}).equal(torch::tensor({4, 5}, torch::kInt64)));

  struct Sentence {
    std::string text;
  };
  auto ds = make_dataset(5, [](int64_t i) { return Sentence{std::string(i, 'a')}; });
  auto loader = make_data_loader(ds, DataLoaderOptions(2), [](std::vector<Sentence> s) {
    std::vector<size_t> lengths;
    for (auto& x : s) lengths.push_back(x.text.size());
    return lengths;
  });
  std::vector<std::vector<size_t>> got;
  for (auto& b : loader) got.push_back(b);
  EXPECT_EQ(got, (std::vector<std::vector<size_t>>{{0, 1}, {2, 3}, {4}}));
}

TEST(DataLoader, TensorDatasetBatchesInOrder) {
  auto x = torch::arange(10).reshape({5, 2});
  auto ds = std::make_shared<TensorDataset>(TensorDict{{"x", x}, {"y", torch::arange(5)}});
  auto loader = make_data_loader(ds, DataLoaderOptions(2).drop_last(true));
  std::vector<TensorDict> got;
  for (auto& b : loader) got.push_back(b);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[1]["x"].equal(x.slice(0, 2, 4)));
  EXPECT_TRUE(got[1]["y"].equal(torch::tensor({2, 3})));
  EXPECT_EQ(loader.size(), 2);
  EXPECT_EQ(loader.epoch(), 1);
}

TEST(DataLoader, OptionsAreValidatedWithTheBadValue) {
  expect_error<std::invalid_argument>([] { make_data_loader(rows(4), DataLoaderOptions(0)); }, {"batch_size 0"});
  expect_error<std::invalid_argument>([] { make_data_loader(rows(4), DataLoaderOptions(2).num_workers(-1)); },
                                      {"num_workers -1"});
  expect_error<std::invalid_argument>(
      [] { make_data_loader(rows(4), DataLoaderOptions(2).num_workers(1).prefetch_factor(0)); }, {"prefetch_factor 0"});
  expect_error<std::invalid_argument>([] { make_data_loader(rows(4), DataLoaderOptions(2).persistent_workers(true)); },
                                      {"persistent_workers"});
  expect_error<std::invalid_argument>([] { make_data_loader(stream(4), DataLoaderOptions(2).shuffle(true)); },
                                      {"iterable"});
  expect_error<std::invalid_argument>(
      [] {
        auto bs = std::make_shared<BatchSampler>(std::make_shared<SequentialSampler>(4), 2, false);
        make_data_loader(rows(4), DataLoaderOptions(2).batch_sampler(bs));
      },
      {"batch_size (2)"});
  expect_error<std::invalid_argument>(
      [] { prepare_data_loader(make_data_loader(rows(8), DataLoaderOptions(3)), rank_of(2, 0).split_batches(true)); },
      {"batch size (3)"});
  expect_error<std::invalid_argument>(
      [] { prepare_data_loader(make_data_loader(rows(8), DataLoaderOptions(2)), rank_of(2, 2)); }, {"process_index 2"});
}

TEST(DataLoader, ShuffleIsSeedPlusEpochAndEpochAdvances) {
  auto loader = make_data_loader(rows(10), DataLoaderOptions(10).shuffle(true).seed(3));
  auto e0 = run_epoch(loader), e1 = run_epoch(loader);
  EXPECT_EQ(e0[0], seeded_permutation(10, 3));
  EXPECT_EQ(e1[0], seeded_permutation(10, 4));
  loader.set_epoch(0);
  EXPECT_EQ(run_epoch(loader), e0);
}

// Map-style and iterable loaders prepared for every rank of a simulated
// world give the reference shards, batch by batch.
TEST(DataLoaderGrid, PreparedLoadersGiveTheReferenceShards) {
  for (int P = 1; P <= 4; ++P)
    for (int64_t bs : {1, 2, 4})
      for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{P - 1}, bs * P, bs * P + 1, int64_t{13}})
        for (bool split : {false, true})
          for (bool even : {false, true})
            for (bool drop : {false, true}) {
              if (split && bs % P != 0) continue;
              Rows order(n);
              std::iota(order.begin(), order.end(), 0);
              for (int p = 0; p < P; ++p) {
                SCOPED_TRACE(::testing::Message() << "n=" << n << " bs=" << bs << " P=" << P << " p=" << p
                                                  << " split=" << split << " even=" << even << " drop=" << drop);
                auto opts = rank_of(P, p).split_batches(split).even_batches(even).dispatch_batches(false);
                auto map = prepare_data_loader(make_data_loader(rows(n), DataLoaderOptions(bs).drop_last(drop)), opts);
                const auto want =
                    P == 1 ? accel::testing::chunk(drop ? accel::testing::cut(order, 0, n / bs * bs) : order, bs)
                           : accel::testing::expected_batch_shard(order, bs, drop, P, p, split, even);
                EXPECT_EQ(run_epoch(map), want);
                if (even) continue;  // the iterable shard has no even_batches switch
                auto it = prepare_data_loader(make_data_loader(stream(n), DataLoaderOptions(bs).drop_last(drop)), opts);
                auto got = run_epoch(it);
                Rows want_rows = P == 1 ? (drop ? accel::testing::cut(order, 0, n / bs * bs) : order)
                                        : accel::testing::expected_iterable_shard(n, bs, drop, P, p, split);
                EXPECT_EQ(flatten(got), want_rows);
                EXPECT_EQ(it.size(), static_cast<int64_t>(got.size()));
              }
            }
}

// gather_for_metrics' rule over all ranks run in lock step: the gathered
// rows, duplicates dropped, are the dataset once, in order.
TEST(DataLoaderGrid, DroppingTheRemainderLeavesEachSampleOnce) {
  for (int P = 1; P <= 4; ++P)
    for (int64_t bs : {1, 2, 4})
      for (int64_t n : {int64_t{1}, int64_t{P - 1}, bs * P, bs * P + 1, int64_t{13}})
        for (bool split : {false, true})
          for (bool iterable : {false, true}) {
            if (n < 1 || (split && bs % P != 0)) continue;
            SCOPED_TRACE(::testing::Message()
                         << "n=" << n << " bs=" << bs << " P=" << P << " split=" << split << " iterable=" << iterable);
            std::vector<DataLoader<torch::Tensor>> loaders;
            for (int p = 0; p < P; ++p) {
              auto opts = rank_of(P, p).split_batches(split).dispatch_batches(false);
              loaders.push_back(iterable ? prepare_data_loader(make_data_loader(stream(n), DataLoaderOptions(bs)), opts)
                                         : prepare_data_loader(make_data_loader(rows(n), DataLoaderOptions(bs)), opts));
            }
            std::vector<DataLoader<torch::Tensor>::Iterator> its;
            for (auto& l : loaders) its.push_back(l.begin());
            Rows seen;
            while (its[0] != loaders[0].end()) {
              std::vector<torch::Tensor> parts;
              for (int p = 0; p < P; ++p) {
                ASSERT_NE(its[p], loaders[p].end());
                EXPECT_EQ(loaders[p].progress().end_of_dataloader, loaders[0].progress().end_of_dataloader);
                parts.push_back(*its[p]);
              }
              auto kept = drop_duplicates(torch::cat(parts), loaders[0].progress());
              auto r = int64_values(kept);
              seen.insert(seen.end(), r.begin(), r.end());
              for (auto& it : its) ++it;
            }
            Rows want(n);
            std::iota(want.begin(), want.end(), 0);
            EXPECT_EQ(seen, want);
          }
}

TEST(DataLoader, DispatchWithOneProcessIsThePlainLoader) {
  for (bool drop : {false, true}) {
    auto plain = make_data_loader(stream(7), DataLoaderOptions(2).drop_last(drop));
    auto dispatched = prepare_data_loader(plain, rank_of(1, 0).dispatch_batches(true));
    EXPECT_EQ(run_epoch(dispatched), run_epoch(plain));
  }
}

TEST(DataLoaderWorkers, SameBatchesAsWithoutWorkers) {
  auto slow = make_data_loader(rows(37), DataLoaderOptions(4).shuffle(true).seed(11));
  const auto want0 = run_epoch(slow), want1 = run_epoch(slow);
  for (int64_t workers : {1, 2, 3})
    for (int64_t prefetch : {1, 3})
      for (bool persistent : {false, true}) {
        auto fast = make_data_loader(
            make_dataset(37,
                         [](int64_t i) {
                           // Uneven cost so that workers finish out of order.
                           std::this_thread::sleep_for(std::chrono::microseconds((i * 7919) % 13 * 50));
                           return torch::tensor(i, torch::kInt64);
                         }),
            DataLoaderOptions(4)
                .shuffle(true)
                .seed(11)
                .num_workers(workers)
                .prefetch_factor(prefetch)
                .persistent_workers(persistent));
        EXPECT_EQ(run_epoch(fast), want0);
        EXPECT_EQ(run_epoch(fast), want1);
      }
  auto it0 = make_data_loader(stream(23), DataLoaderOptions(3));
  auto it2 = make_data_loader(stream(23), DataLoaderOptions(3).num_workers(2));
  EXPECT_EQ(run_epoch(it2), run_epoch(it0));
}

TEST(DataLoaderWorkers, AnErrorArrivesAtItsBatchAndBreakingOutIsSafe) {
  auto ds = make_dataset(20, [](int64_t i) {
    if (i == 9) throw std::runtime_error("bad sample 9");
    return torch::tensor(i);
  });
  for (int64_t workers : {0, 2}) {
    auto loader = make_data_loader(ds, DataLoaderOptions(2).num_workers(workers));
    int seen = 0;
    EXPECT_EQ(error_of<std::runtime_error>([&] {
                for (auto& b : loader) {
                  (void)b;
                  ++seen;
                }
              }),
              "bad sample 9");
    EXPECT_EQ(seen, 3);  // batches [0,1] [2,3] [4,5]; [6,7] in hand when [8,9] fails ahead
  }
  auto loader = make_data_loader(rows(100), DataLoaderOptions(1).num_workers(3));
  for (auto& b : loader) {
    if (int64_values(b)[0] == 5) break;
  }
  EXPECT_EQ(run_epoch(loader).size(), 100u);  // the interrupted epoch restarts
}

TEST(DataLoaderState, JsonRoundTripAndErrors) {
  LoaderState s{3, 7, 42};
  EXPECT_EQ(s.to_string(), R"({"epoch":3,"position":7,"seed":42})");
  EXPECT_EQ(LoaderState::from_string(s.to_string()), s);
  LoaderState none{1, 0, std::nullopt};
  EXPECT_EQ(LoaderState::from_string(none.to_string()), none);
  EXPECT_THROW(LoaderState::from_string("{\"epoch\":1}"), std::invalid_argument);
  EXPECT_THROW(LoaderState::from_string("{\"epoch\":-1,\"position\":0}"), std::invalid_argument);
  EXPECT_THROW(LoaderState::from_string("not json"), std::invalid_argument);
}

// Stop after k batches, save, restore into a new loader (built with another
// seed, so the state's seed must win): the rest is the uninterrupted run.
TEST(DataLoaderState, ResumeContinuesTheUninterruptedSequence) {
  for (bool iterable : {false, true})
    for (int p = 0; p < 2; ++p)
      for (int64_t workers : {0, 2})
        for (int64_t k : {0, 1, 3, 5, 6}) {
          SCOPED_TRACE(::testing::Message()
                       << "iterable=" << iterable << " p=" << p << " k=" << k << " workers=" << workers);
          auto make = [&](uint64_t seed) {
            auto o = DataLoaderOptions(2).num_workers(workers);
            auto opts = rank_of(2, p).dispatch_batches(false);
            if (iterable) return prepare_data_loader(make_data_loader(stream(23), o), opts);
            return prepare_data_loader(make_data_loader(rows(23), o.shuffle(true).seed(seed)), opts);
          };
          auto whole = make(5);
          RowBatches want;
          for (int e = 0; e < 3; ++e) {
            auto ep = run_epoch(whole);
            want.insert(want.end(), ep.begin(), ep.end());
          }
          // Interrupted in epoch 1, after k batches.
          auto first = make(5);
          RowBatches got = run_epoch(first);
          std::string saved = first.state().to_string();
          int64_t taken = 0;
          for (auto& b : first) {
            if (taken == k) break;
            got.push_back(int64_values(b));
            ++taken;
            saved = first.state().to_string();
          }
          auto resumed = make(99);
          resumed.load_state(LoaderState::from_string(saved));
          for (int e = 0; e < 2; ++e) {
            auto ep = run_epoch(resumed);
            got.insert(got.end(), ep.begin(), ep.end());
          }
          EXPECT_EQ(got, want);
        }
}

TEST(DataLoaderState, SkipFirstBatches) {
  auto loader = make_data_loader(rows(10), DataLoaderOptions(3));
  auto skipped = skip_first_batches(loader, 2);
  EXPECT_EQ(run_epoch(skipped), (RowBatches{{6, 7, 8}, {9}}));
  EXPECT_EQ(run_epoch(skipped).size(), 4u);  // later epochs are whole
  EXPECT_EQ(run_epoch(loader).size(), 4u);   // the original is untouched
  auto unshuffled = make_data_loader(rows(4));
  EXPECT_THROW(unshuffled.load_state(LoaderState{0, 1, 7}), std::invalid_argument);
}

TEST(DataLoader, PinnedBatchesReachTheDevice) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto loader = prepare_data_loader(make_data_loader(rows(9), DataLoaderOptions(4).pin_memory(true).num_workers(1)),
                                    rank_of(1, 0).device(torch::Device(torch::kCUDA, 0)).non_blocking(true));
  Rows seen;
  for (auto& b : loader) {
    EXPECT_TRUE(b.is_cuda());
    auto r = int64_values(b.cpu());
    seen.insert(seen.end(), r.begin(), r.end());
  }
  EXPECT_EQ(seen.size(), 9u);
}
