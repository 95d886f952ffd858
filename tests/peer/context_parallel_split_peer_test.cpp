// accel's load-balanced context-parallel split against torch's own (the
// head-tail load balancer torch's context_parallel applies to causal
// attention, which Accelerate's maybe_context_parallel uses): the same
// global positions on every rank, for several lengths and cp sizes.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <utility>
#include <vector>

#include "accel/parallel/context/sequence_shard.h"
#include "support/peers.h"

TEST(ContextParallelSplitPeer, LoadBalancedSplitIsTorchs) {
  REQUIRE_PEERS("torch");
  const std::vector<std::pair<int64_t, int64_t>> cases = {{4, 2}, {16, 2}, {16, 4}, {48, 3}, {64, 8}};
  nlohmann::json request = nlohmann::json::array();
  for (const auto& [length, world] : cases) request.push_back({length, world});
  const auto theirs = accel::testing::run_peer_script("context_parallel_split.py", {request.dump()});
  ASSERT_EQ(theirs.size(), cases.size()) << theirs.dump();
  for (size_t c = 0; c < cases.size(); ++c) {
    const auto [length, world] = cases[c];
    for (int64_t rank = 0; rank < world; ++rank) {
      const auto mine = accel::context_parallel_positions(length, world, rank, /*load_balance=*/true);
      const auto want = theirs[c][rank].get<std::vector<int64_t>>();
      EXPECT_TRUE(mine.equal(torch::tensor(want, torch::kLong)))
          << "length " << length << ", cp " << world << ", rank " << rank << ": accel " << mine << ", torch "
          << theirs[c][rank].dump();
    }
  }
}
