// The tensor-parallel pieces over 2 Gloo ranks (3 where a split is
// uneven), each against the same computation done whole in one process
// (float64, so the only differences are summation order): the region
// crossings, column- and row-parallel Linear, the vocabulary-parallel
// embedding and cross-entropy (torch's cross_entropy, ignore_index
// included), forward values and every gradient; the tied loss with its
// options, whole and split.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/ops/linear_cross_entropy.h"
#include "accel/parallel/tensor/parallel_linear.h"
#include "accel/parallel/tensor/parallelize.h"
#include "accel/parallel/tensor/regions.h"
#include "accel/parallel/tensor/shard.h"
#include "accel/parallel/tensor/vocab_parallel.h"
#include "accel/state.h"
#include "support/distributed.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;

namespace {

constexpr double kTol = 1e-12;
const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);

// The same random tensor on every rank.
torch::Tensor same_randn(std::vector<int64_t> shape, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, g, f64);
}

ProcessGroupPtr world() { return state().process_group(); }

torch::nn::Linear full_linear(int64_t in, int64_t out, uint64_t seed) {
  torch::nn::Linear l(in, out);
  l->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  l->weight.copy_(same_randn({out, in}, seed));
  l->bias.copy_(same_randn({out}, seed + 1));
  return l;
}

// This rank's slice [rank * n / size, ...) of the last dim.
torch::Tensor my_slice(const torch::Tensor& t, int64_t dim = -1) {
  const int r = state().rank(), n = state().world_size();
  const int64_t piece = t.size(dim) / n;
  return t.narrow(dim, r * piece, piece);
}

}  // namespace

TEST(TensorParallelRegions, CopyToSumsGradientsReduceFromSumsValues) {
  run_distributed(2, [] {
    const double rank = state().rank();
    // copy_to: the value passes; each rank's gradient (rank + 1) is summed: 1 + 2.
    auto x = same_randn({3, 4}, 1).requires_grad_();
    auto y = copy_to_tensor_parallel_region(x, world());
    EXPECT_EQ(max_diff(y, x), 0.0);
    (y * (rank + 1)).sum().backward();
    EXPECT_EQ(max_diff(x.grad(), torch::full({3, 4}, 3.0, f64)), 0.0);
    // reduce_from: values summed, the gradient passes unchanged.
    auto a = (same_randn({3, 4}, 2) * (rank + 1)).requires_grad_();
    auto s = reduce_from_tensor_parallel_region(a, world());
    EXPECT_LT(max_diff(s, same_randn({3, 4}, 2) * 3.0), kTol);
    (s * (rank + 1)).sum().backward();
    EXPECT_EQ(max_diff(a.grad(), torch::full({3, 4}, rank + 1, f64)), 0.0);
  });
}

TEST(TensorParallelRegions, GatherAndScatterAlongTheLastDim) {
  run_distributed(3, [] {
    const int rank = state().rank();
    auto full = same_randn({2, 9}, 3);
    // scatter: own third; backward gathers every rank's third of the gradient.
    auto x = full.clone().requires_grad_();
    auto mine = scatter_to_tensor_parallel_region(x, world());
    EXPECT_EQ(max_diff(mine, my_slice(full)), 0.0);
    auto weights = same_randn({2, 9}, 4);
    (mine * my_slice(weights)).sum().backward();
    EXPECT_EQ(max_diff(x.grad(), weights), 0.0);
    // gather with uneven sizes 4, 3, 2: the whole, and backward keeps own part.
    const std::vector<int64_t> sizes{4, 3, 2};
    const int64_t begin = rank == 0 ? 0 : rank == 1 ? 4 : 7;
    auto part = full.narrow(-1, begin, sizes[rank]).clone().requires_grad_();
    auto whole = gather_from_tensor_parallel_region(part, world(), sizes);
    EXPECT_EQ(max_diff(whole, full), 0.0);
    (whole * weights).sum().backward();
    EXPECT_EQ(max_diff(part.grad(), weights.narrow(-1, begin, sizes[rank])), 0.0);
    // A last dim that does not divide is refused, naming both sizes.
    try {
      scatter_to_tensor_parallel_region(same_randn({2, 8}, 5), world());
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("last dimension (8) must divide by the tensor-parallel size (3)"),
                std::string::npos)
          << e.what();
    }
  });
}

TEST(TensorParallelRegions, SequenceCrossingsMoveAlongTheSequenceDim) {
  run_distributed(3, [] {
    const double rank = state().rank();
    auto full = same_randn({2, 6, 4}, 20);  // [batch, seq, features], seq split in 3
    auto weights = same_randn({2, 6, 4}, 21);
    // scatter: own third of the sequence; backward gathers every rank's third.
    auto x = full.clone().requires_grad_();
    auto mine = scatter_to_sequence_parallel_region(x, world(), 1);
    EXPECT_EQ(max_diff(mine, my_slice(full, 1)), 0.0);
    (mine * my_slice(weights, 1)).sum().backward();
    EXPECT_EQ(max_diff(x.grad(), weights), 0.0);
    // gather: the whole sequence. A partial gradient (rank + 1 times the
    // weights) is summed over the ranks and cut (1 + 2 + 3 = 6); a whole one
    // is only cut.
    for (bool partial : {true, false}) {
      auto part = my_slice(full, 1).clone().requires_grad_();
      auto whole = gather_from_sequence_parallel_region(part, world(), 1, partial);
      EXPECT_EQ(max_diff(whole, full), 0.0);
      (whole * weights * (partial ? rank + 1 : 1.0)).sum().backward();
      EXPECT_LT(max_diff(part.grad(), my_slice(weights, 1) * (partial ? 6.0 : 1.0)), kTol) << partial;
    }
    // reduce-scatter: the sum over the ranks (1 + 2 + 3 times), own third
    // kept; backward gathers every rank's gradient of its third.
    auto a = (full * (rank + 1)).detach().requires_grad_();
    auto reduced = reduce_scatter_to_sequence_parallel_region(a, world(), 1);
    EXPECT_LT(max_diff(reduced, my_slice(full, 1) * 6.0), kTol);
    (reduced * my_slice(weights, 1)).sum().backward();
    EXPECT_EQ(max_diff(a.grad(), weights), 0.0);
    // A sequence that does not divide is refused, naming both sizes.
    try {
      scatter_to_sequence_parallel_region(same_randn({2, 7, 4}, 22), world(), 1);
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("has 7 positions, not a multiple of the tensor-parallel size 3"),
                std::string::npos)
          << e.what();
    }
  });
}

TEST(TensorParallelLinear, ColumnParallelEqualsTheWholeLayer) {
  run_distributed(2, [] {
    for (bool gather : {false, true}) {
      auto full = full_linear(6, 8, 10);
      auto x_ref = same_randn({3, 5, 6}, 12).requires_grad_();
      auto out_weights = same_randn({3, 5, 8}, 13);  // a loss that sees every output
      auto y_ref = full(x_ref);
      (y_ref * out_weights).sum().backward();

      ColumnParallelLinear col(full, world(), gather);
      auto x = same_randn({3, 5, 6}, 12).requires_grad_();
      auto y = col(x);
      if (gather) {
        EXPECT_LT(max_diff(y, y_ref), kTol);
        (y * out_weights).sum().backward();
      } else {
        EXPECT_LT(max_diff(y, my_slice(y_ref)), kTol);
        (y * my_slice(out_weights)).sum().backward();
      }
      EXPECT_LT(max_diff(x.grad(), x_ref.grad()), kTol) << "gather_output " << gather;
      EXPECT_LT(max_diff(col->weight.grad(), my_slice(full->weight.grad(), 0)), kTol);
      EXPECT_LT(max_diff(col->bias.grad(), my_slice(full->bias.grad(), 0)), kTol);
    }
  });
}

TEST(TensorParallelLinear, RowParallelEqualsTheWholeLayerWithTheBiasOnce) {
  run_distributed(2, [] {
    for (bool input_is_parallel : {true, false}) {
      auto full = full_linear(8, 6, 20);
      auto x_full = same_randn({3, 5, 8}, 22);
      auto x_ref = x_full.clone().requires_grad_();
      auto out_weights = same_randn({3, 5, 6}, 23);
      auto y_ref = full(x_ref);
      (y_ref * out_weights).sum().backward();

      RowParallelLinear row(full, world(), input_is_parallel);
      auto x = (input_is_parallel ? my_slice(x_full).clone() : x_full.clone()).requires_grad_();
      auto y = row(x);
      EXPECT_LT(max_diff(y, y_ref), kTol) << "input_is_parallel " << input_is_parallel;
      (y * out_weights).sum().backward();
      EXPECT_LT(max_diff(x.grad(), input_is_parallel ? my_slice(x_ref.grad()) : x_ref.grad()), kTol);
      EXPECT_LT(max_diff(row->weight.grad(), my_slice(full->weight.grad(), 1)), kTol);
      EXPECT_LT(max_diff(row->bias.grad(), full->bias.grad()), kTol);
    }
  });
}

TEST(TensorParallelShard, PackedBlocksSplitEachBlock) {
  // q, k, v blocks of 4 rows over 2 ranks: rank 1 holds rows 2-3, 6-7, 10-11.
  auto full = torch::arange(12, torch::kFloat64).reshape({12, 1});
  auto mine = shard_dim(full, 0, 1, 2, 3, "c_attn");
  EXPECT_EQ(max_diff(mine.flatten(), torch::tensor({2., 3., 6., 7., 10., 11.}, f64)), 0.0);
  EXPECT_EQ(max_diff(unshard_dim({shard_dim(full, 0, 0, 2, 3), mine}, 0, 3), full), 0.0);
  try {
    shard_dim(full, 0, 0, 3, 3, "c_attn");
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("c_attn: dimension 0 of size 12 does not split into 3 blocks over a "
                                         "tensor-parallel size of 3 (expected a multiple of 9)"),
              std::string::npos)
        << e.what();
  }
  // Uneven vocabularies: the first ranks one row more.
  EXPECT_EQ(vocab_range(11, 0, 3), (std::pair<int64_t, int64_t>(0, 4)));
  EXPECT_EQ(vocab_range(11, 2, 3), (std::pair<int64_t, int64_t>(8, 11)));
}

TEST(TensorParallelVocab, EmbeddingEqualsTheWholeTable) {
  run_distributed(3, [] {  // 11 rows over 3 ranks: 4, 4, 3
    torch::nn::Embedding full(11, 5);
    full->to(torch::kFloat64);
    {
      torch::NoGradGuard no_grad;
      full->weight.copy_(same_randn({11, 5}, 30));
    }
    auto g = at::detail::createCPUGenerator(31);
    auto ids = torch::randint(0, 11, {4, 7}, g);
    auto out_weights = same_randn({4, 7, 5}, 32);
    (full(ids) * out_weights).sum().backward();

    VocabParallelEmbedding emb(full, world());
    auto [begin, end] = vocab_range(11, state().rank(), 3);
    EXPECT_EQ(emb->vocab_begin(), begin);
    auto y = emb(ids);
    EXPECT_LT(max_diff(y, full(ids)), kTol);
    (y * out_weights).sum().backward();
    EXPECT_LT(max_diff(emb->weight.grad(), full->weight.grad().narrow(0, begin, end - begin)), kTol);

    try {
      emb(torch::tensor({{3, 11}}));
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("token id 11 is outside the vocabulary [0, 11)"), std::string::npos)
          << e.what();
    }
  });
}

TEST(TensorParallelVocab, CrossEntropyEqualsTorchsWithoutGatheringLogits) {
  run_distributed(3, [] {
    const int64_t V = 11;
    auto logits_full = same_randn({4, 6, V}, 40) * 3.0;
    auto g = at::detail::createCPUGenerator(41);
    auto targets = torch::randint(0, V, {4, 6}, g);
    targets.index_put_({0, torch::indexing::Slice(0, 3)}, -100);  // ignored, as torch's default
    targets.index_put_({2, 5}, -100);
    auto ref_in = logits_full.clone().requires_grad_();
    auto ref = torch::nn::functional::cross_entropy(ref_in.reshape({-1, V}), targets.reshape({-1}));
    (ref * 2.5).backward();

    auto [begin, end] = vocab_range(V, state().rank(), 3);
    auto mine = logits_full.narrow(-1, begin, end - begin).clone().requires_grad_();
    auto loss = vocab_parallel_cross_entropy(mine, targets, begin, V, world());
    EXPECT_LT(std::abs(loss.item<double>() - ref.item<double>()), kTol);
    (loss * 2.5).backward();
    EXPECT_LT(max_diff(mine.grad(), ref_in.grad().narrow(-1, begin, end - begin)), kTol);

    // float32 logits: the same value to float precision.
    auto loss32 = vocab_parallel_cross_entropy(mine.detach().to(torch::kFloat), targets, begin, V, world());
    EXPECT_EQ(loss32.scalar_type(), torch::kFloat);
    EXPECT_LT(std::abs(loss32.item<double>() - ref.item<double>()), 1e-5);

    auto bad = targets.clone();
    bad.index_put_({1, 1}, 12);
    try {
      vocab_parallel_cross_entropy(mine, bad, begin, V, world());
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("token id 12 is outside the vocabulary [0, 11)"), std::string::npos)
          << e.what();
    }
  });
}

// parallel_tied_cross_entropy passes its options on: the same ignore_index
// (here 3, not torch's -100) counts whether the vocabulary is whole
// (accel::linear_cross_entropy) or split over 2 ranks (the
// vocabulary-parallel loss), both equal to torch's cross_entropy over the
// full logits.
TEST(TensorParallelVocab, TiedCrossEntropyTakesItsOptionsWholeOrSplit) {
  run_distributed(2, [] {
    const int64_t V = 12, C = 5;
    auto make = [&] {
      auto m = std::make_shared<torch::nn::Module>();
      auto emb = m->register_module("wte", torch::nn::Embedding(V, C));
      emb->to(torch::kFloat64);
      torch::NoGradGuard no_grad;
      emb->weight.copy_(same_randn({V, C}, 50));
      return std::make_pair(m, emb);
    };
    auto hidden = same_randn({3, 4, C}, 51);
    auto g = at::detail::createCPUGenerator(52);
    auto targets = torch::randint(0, V, {3, 4}, g);
    targets.index_put_({0, torch::indexing::Slice(0, 2)}, 3);
    const auto options = LinearCrossEntropyOptions().ignore_index(3);
    auto ref = torch::nn::functional::cross_entropy(torch::matmul(hidden, same_randn({V, C}, 50).t()).reshape({-1, V}),
                                                    targets.reshape({-1}),
                                                    torch::nn::functional::CrossEntropyFuncOptions().ignore_index(3));

    auto [whole_model, whole] = make();
    // (linear_cross_entropy sums the loss in float32.)
    EXPECT_LT(
        std::abs(parallel_tied_cross_entropy(hidden, whole, targets, options).item<double>() - ref.item<double>()),
        1e-6);
    auto [split_model, split] = make();
    parallelize_tensor(*split_model, world(), {{"wte", "embedding_rowwise"}});
    EXPECT_LT(
        std::abs(parallel_tied_cross_entropy(hidden, split, targets, options).item<double>() - ref.item<double>()),
        1e-12);
    // Without the option the 3s count as targets: another value.
    EXPECT_GT(std::abs(parallel_tied_cross_entropy(hidden, split, targets).item<double>() - ref.item<double>()), 1e-6);
  });
}
