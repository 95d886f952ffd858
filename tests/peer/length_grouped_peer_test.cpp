// accel::get_length_grouped_indices and LengthGroupedSampler against
// Transformers' own (tests/peer/scripts/length_grouped_peer.py) on the same
// lengths and generator seeds: tiny sets, the default megabatch size (4
// megabatches, capped at 50 batches), an explicit one, many ties. Also
// checks the premise: C++ randperm from a CPU generator seeded alike gives
// Python's permutation.
#include <cstdint>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "accel/data/length_grouped_sampler.h"
#include "accel/data/sampler.h"
#include "support/peers.h"

using namespace accel;

TEST(LengthGroupedPeer, SameIndicesAsTransformers) {
  REQUIRE_PEERS("torch", "transformers");
  const auto cases = accel::testing::run_peer_script("length_grouped_peer.py", {});
  ASSERT_GE(cases.size(), 18u);
  for (const auto& c : cases) {
    const auto lengths = c.at("lengths").get<std::vector<int64_t>>();
    const auto batch = c.at("batch_size").get<int64_t>();
    const auto seed = c.at("seed").get<uint64_t>();
    const std::optional<int64_t> mult =
        c.at("mega_batch_mult").is_null() ? std::nullopt : std::optional<int64_t>(c.at("mega_batch_mult"));
    const std::string where =
        "n=" + std::to_string(lengths.size()) + " batch=" + std::to_string(batch) + " seed=" + std::to_string(seed);
    EXPECT_EQ(seeded_permutation(static_cast<int64_t>(lengths.size()), seed), c.at("randperm").get<Indices>()) << where;
    EXPECT_EQ(get_length_grouped_indices(lengths, batch, mult, at::make_generator<at::CPUGeneratorImpl>(seed)),
              c.at("indices").get<Indices>())
        << where;
    if (!c.at("sampler").is_null()) {
      // Transformers' evaluation sampler: one generator seeded with the seed.
      const LengthGroupedSampler fixed(lengths, batch, seed, /*reshuffle_each_epoch=*/false);
      EXPECT_EQ(fixed.indices(3), c.at("sampler").get<Indices>()) << where;
      // Training: epoch e draws from seed + e.
      const LengthGroupedSampler training(lengths, batch, seed - 2);
      EXPECT_EQ(training.indices(2), c.at("sampler").get<Indices>()) << where;
    }
  }
}
