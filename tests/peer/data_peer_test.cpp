// accel's sharding against Accelerate 1.15's own classes, run from the
// .venv: BatchSamplerShard (batches and length), IterableDatasetShard and
// SeedableRandomSampler's permutation, over the grid the script prints.
#include <cstdio>
#include <filesystem>
#include <memory>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "accel/data/batch_sampler_shard.h"
#include "accel/data/iterable_dataset_shard.h"
#include "accel/data/sampler.h"
#include "support/peers.h"

using namespace accel;

namespace {

// The script's records, read once for all tests.
const nlohmann::json& records() { return accel::testing::peer_script_json("data_shards.py"); }

std::shared_ptr<IterableDataset<int64_t>> counting(int64_t n) {
  return std::make_shared<LambdaIterableDataset<int64_t>>([n](int64_t) {
    return ExampleStream<int64_t>([i = int64_t{0}, n]() mutable -> std::optional<int64_t> {
      if (i >= n) return std::nullopt;
      return i++;
    });
  });
}

#define REQUIRE_SCRIPT() REQUIRE_PEERS("torch", "accelerate")

}  // namespace

TEST(DataPeer, BatchSamplerShardEqualsAccelerate) {
  REQUIRE_SCRIPT();
  int compared = 0;
  for (const auto& r : records()) {
    if (r["kind"] != "batch") continue;
    const int64_t n = r["n"], bs = r["bs"];
    const int P = r["P"], p = r["p"];
    const bool split = r["split"], even = r["even"], drop = r["drop"];
    auto inner = std::make_shared<BatchSampler>(std::make_shared<SequentialSampler>(n), bs, drop);
    BatchSamplerShard s(inner, P, p, split, even);
    EXPECT_EQ(s.batches(0), r["batches"].get<IndexBatches>()) << r.dump();
    EXPECT_EQ(s.size(), r["len"].get<int64_t>()) << r.dump();
    ++compared;
  }
  EXPECT_GT(compared, 1500);
}

TEST(DataPeer, IterableDatasetShardEqualsAccelerate) {
  REQUIRE_SCRIPT();
  int compared = 0;
  for (const auto& r : records()) {
    if (r["kind"] != "iter") continue;
    IterableDatasetShard<int64_t> s(counting(r["n"]), r["bs"], r["drop"], r["P"], r["p"], r["split"]);
    Indices got;
    auto stream = s.open(0);
    while (auto e = stream()) got.push_back(*e);
    EXPECT_EQ(got, r["samples"].get<Indices>()) << r.dump();
    ++compared;
  }
  EXPECT_GT(compared, 500);
}

// LibTorch's C++ CPU generator and Python's are the same mt19937 and
// randperm the same kernel, so the permutations are equal, not just alike.
TEST(DataPeer, SeedableRandomSamplerEqualsAccelerate) {
  REQUIRE_SCRIPT();
  int compared = 0;
  for (const auto& r : records()) {
    if (r["kind"] != "perm") continue;
    SeedableRandomSampler s(r["n"], r["seed"].get<uint64_t>());
    EXPECT_EQ(s.indices(r["epoch"].get<int64_t>()), r["perm"].get<Indices>()) << r.dump();
    ++compared;
  }
  EXPECT_GT(compared, 100);
}
