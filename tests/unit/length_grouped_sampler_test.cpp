// LengthGroupedSampler's invariants, computed from its output: every epoch
// is a permutation; within each megabatch the lengths do not increase; the
// first index is the longest example; epochs differ and each is the same
// whenever asked; bad arguments are refused. (Transformers' exact indices:
// tests/peer/length_grouped_peer_test.cpp.)
#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "accel/data/data_loader.h"
#include "accel/data/length_grouped_sampler.h"

using namespace accel;

TEST(LengthGroupedSampler, MegabatchesSortedLongestFirst) {
  std::vector<int64_t> lengths(203);
  for (size_t i = 0; i < lengths.size(); ++i) lengths[i] = static_cast<int64_t>((i * 37) % 61 + 1);
  const int64_t batch = 4, megabatch = std::min<int64_t>(203 / (4 * batch), 50) * batch;  // 12 * 4
  const LengthGroupedSampler sampler(lengths, batch, 5);
  ASSERT_EQ(sampler.size(), 203);
  const auto e0 = sampler.indices(0), e1 = sampler.indices(1);
  EXPECT_EQ(e0, sampler.indices(0));
  EXPECT_NE(e0, e1);
  for (const auto& order : {e0, e1}) {
    auto sorted = order;
    std::sort(sorted.begin(), sorted.end());
    Indices all(203);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all);
    EXPECT_EQ(lengths[order[0]], *std::max_element(lengths.begin(), lengths.end()));
    for (int64_t s = 0; s < 203; s += megabatch) {
      // A megabatch's head may be the one swapped with the longest's.
      for (int64_t i = s + 2; i < std::min<int64_t>(203, s + megabatch); ++i) {
        EXPECT_GE(lengths[order[i - 1]], lengths[order[i]]) << "megabatch at " << s << ", position " << i;
      }
    }
  }
  // The evaluation form ignores the epoch.
  const LengthGroupedSampler fixed(lengths, batch, 5, false);
  EXPECT_EQ(fixed.indices(0), fixed.indices(7));
  EXPECT_EQ(fixed.indices(0), e0);
}

TEST(LengthGroupedSampler, RefusesBadArguments) {
  EXPECT_THROW(LengthGroupedSampler({1, 2}, 0, 1), std::invalid_argument);
  EXPECT_THROW(get_length_grouped_indices({1, 2}, 1, 0, at::make_generator<at::CPUGeneratorImpl>(1)),
               std::invalid_argument);
  EXPECT_TRUE(LengthGroupedSampler({}, 2, 1).indices(0).empty());
}

// A loader given the sampler (DataLoaderOptions::sampler) reads in its order.
TEST(LengthGroupedSampler, DrivesADataLoader) {
  std::vector<int64_t> lengths{3, 9, 1, 4, 4, 7, 2, 8, 6, 5};
  auto sampler = std::make_shared<LengthGroupedSampler>(lengths, 2, 9);
  auto rows = make_dataset(10, [](int64_t i) { return TensorDict{{"i", torch::tensor(i)}}; });
  auto loader = make_data_loader(rows, DataLoaderOptions(2).sampler(sampler));
  Indices seen;
  for (auto& batch : loader)
    for (int64_t k = 0; k < batch.at("i").size(0); ++k) seen.push_back(batch.at("i")[k].item<int64_t>());
  EXPECT_EQ(seen, sampler->indices(0));
}
