// Context-parallel causal attention over 2 and 4 Gloo ranks, each strategy
// and each split, against torch's causal SDPA over the whole sequence in
// one process (float64): the output and the gradients of q, k and v, every
// rank's part within 1e-10. The parts are cut by the test from the split's
// definition (chunk r and chunk 2n-1-r of 2n, or block r of n), not by the
// library's shard_sequence, which is checked against the same cut.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/parallel/context/context_parallel.h"
#include "accel/parallel/context/ring_attention.h"
#include "accel/parallel/context/sequence_shard.h"
#include "accel/state.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::expect_error;
using accel::testing::max_diff;
using accel::testing::run_distributed;

namespace {

constexpr double kTol = 1e-10;
const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);

torch::Tensor same_randn(std::vector<int64_t> shape, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, g, f64);
}

ProcessGroupPtr world() { return state().process_group(); }

// The positions rank r of n holds of a sequence of `length`, written out
// position by position.
torch::Tensor positions_of(int64_t length, int n, int r, bool load_balance) {
  std::vector<int64_t> p;
  const int64_t chunk = length / (load_balance ? 2 * n : n);
  for (int64_t i = 0; i < length; ++i) {
    const int64_t c = i / chunk;
    if (c == r || (load_balance && c == 2 * n - 1 - r)) p.push_back(i);
  }
  return torch::tensor(p, torch::kLong);
}

torch::Tensor part(const torch::Tensor& whole, bool load_balance) {
  return whole.index_select(2, positions_of(whole.size(2), state().world_size(), state().rank(), load_balance));
}

// Every strategy and split, with heads of `head_dim` and values of `value_dim`.
void expect_equals_whole_attention(int64_t length, int64_t head_dim, int64_t value_dim) {
  const int64_t B = 2, H = 3;
  auto q = same_randn({B, H, length, head_dim}, 1).requires_grad_();
  auto k = same_randn({B, H, length, head_dim}, 2).requires_grad_();
  auto v = same_randn({B, H, length, value_dim}, 3).requires_grad_();
  auto dy = same_randn({B, H, length, value_dim}, 4);
  auto y = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
  y.backward(dy);
  for (auto strategy : {ContextParallelStrategy::allgather, ContextParallelStrategy::alltoall}) {
    for (bool balanced : {false, true}) {
      SCOPED_TRACE(to_string(strategy) + (balanced ? " load-balanced" : " contiguous"));
      auto q_part = part(q.detach(), balanced).requires_grad_();
      auto k_part = part(k.detach(), balanced).requires_grad_();
      auto v_part = part(v.detach(), balanced).requires_grad_();
      auto y_part = ring_attention(q_part, k_part, v_part, world(), strategy, balanced);
      y_part.backward(part(dy, balanced));
      EXPECT_LT(max_diff(y_part, part(y.detach(), balanced)), kTol);
      EXPECT_LT(max_diff(q_part.grad(), part(q.grad(), balanced)), kTol);
      EXPECT_LT(max_diff(k_part.grad(), part(k.grad(), balanced)), kTol);
      EXPECT_LT(max_diff(v_part.grad(), part(v.grad(), balanced)), kTol);
    }
  }
}

}  // namespace

TEST(ContextParallelAttention, TwoRanksEqualWholeAttention) {
  run_distributed(2, [] {
    expect_equals_whole_attention(/*length=*/12, /*head_dim=*/5, /*value_dim=*/5);
    expect_equals_whole_attention(/*length=*/8, /*head_dim=*/3, /*value_dim=*/7);
  });
}

TEST(ContextParallelAttention, FourRanksEqualWholeAttention) {
  run_distributed(4, [] { expect_equals_whole_attention(/*length=*/24, /*head_dim=*/7, /*value_dim=*/7); });
}

TEST(ContextParallelAttention, ShardAndUnshardFollowTheSplit) {
  run_distributed(4, [] {
    const int n = state().world_size(), r = state().rank();
    auto x = same_randn({2, 16, 3}, 5);
    for (bool balanced : {false, true}) {
      auto mine = positions_of(16, n, r, balanced);
      EXPECT_TRUE(torch::equal(context_parallel_positions(16, n, r, balanced), mine));
      auto piece = shard_sequence(x, /*seq_dim=*/1, n, r, balanced);
      EXPECT_TRUE(torch::equal(piece, x.index_select(1, mine)));
      EXPECT_TRUE(torch::equal(unshard_sequence(piece, 1, world(), balanced), x));
      ContextParallel cp(world(), ContextParallelOptions().load_balance(balanced));
      EXPECT_TRUE(torch::equal(cp.shard({x}, -2)[0], piece));
      EXPECT_TRUE(torch::equal(cp.positions(4), mine));
    }
  });
}

TEST(ContextParallelAttention, SeamsArePlainOutsideAScope) {
  run_distributed(2, [] {
    auto q = same_randn({1, 2, 8, 4}, 6), k = same_randn({1, 2, 8, 4}, 7), v = same_randn({1, 2, 8, 4}, 8);
    EXPECT_EQ(active_context_parallel(), nullptr);
    EXPECT_EQ(max_diff(context_parallel_attention(q, k, v), at::scaled_dot_product_attention(q, k, v, {}, 0.0, true)),
              0.0);
    EXPECT_TRUE(torch::equal(context_parallel_positions(8, 3, torch::kLong), torch::arange(3, 11)));
    EXPECT_EQ(context_parallel_sequence_length(8), 8);
    ContextParallel cp(world(), ContextParallelOptions().comm_strategy("alltoall"));
    ContextParallelScope scope(cp);
    EXPECT_EQ(active_context_parallel(), &cp);
    EXPECT_EQ(context_parallel_sequence_length(4), 8);
    EXPECT_TRUE(torch::equal(context_parallel_positions(4, 0, torch::kLong), positions_of(8, 2, state().rank(), true)));
    auto y = context_parallel_attention(part(q, true), part(k, true), part(v, true));
    EXPECT_LT(max_diff(y, part(at::scaled_dot_product_attention(q, k, v, {}, 0.0, true), true)), kTol);
  });
}

TEST(ContextParallelAttention, RefusesBadInput) {
  run_distributed(2, [] {
    expect_error<std::invalid_argument>([] { context_parallel_strategy("ring"); }, {"'ring'", "allgather", "alltoall"});
    expect_error<std::invalid_argument>([] { ContextParallel(world(), ContextParallelOptions().comm_strategy("p2p")); },
                                        {"'p2p'"});
    // 6 tokens: 3 per rank, which the load-balanced split cannot halve.
    auto x = same_randn({1, 1, 3, 4}, 9);
    expect_error<std::invalid_argument>(
        [&] { ring_attention(x, x, x, world(), ContextParallelStrategy::alltoall, true); }, {"6 tokens", "4"});
    expect_error<std::invalid_argument>(
        [&] {
          shard_sequence(same_randn({1, 6}, 1), 1, 4, 0, false);
        },
        {"6 tokens", "cp_size = 4"});
    expect_error<std::invalid_argument>(
        [&] {
          shard_sequence(same_randn({1, 6}, 1), 1, 2, 0, true);
        },
        {"6 tokens", "2 * cp_size = 4"});
    auto y = same_randn({1, 1, 4, 4}, 9);
    expect_error<std::invalid_argument>(
        [&] {
          ring_attention(y, same_randn({1, 1, 2, 4}, 1), y, world(), ContextParallelStrategy::allgather, false);
        },
        {"[1, 1, 2, 4]", "sequence length"});
    ContextParallel cp(world());
    ContextParallelScope scope(cp);
    expect_error<std::invalid_argument>([&] { context_parallel_attention(y, y, y, 0.1); }, {"dropout_p is 0.1"});
    expect_error<std::invalid_argument>([&] { context_parallel_positions(4, 2, torch::kLong); }, {"2 cached"});
  });
}
