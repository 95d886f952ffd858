// parallelize_tensor's plan: what it refuses (naming the pattern, the
// module, the style or the sizes, and leaving the model as it was), and the
// GPT-2 example split over a vocabulary that does not divide (509 tokens on
// 2 ranks): its gathered logits equal the whole model's, and its slices
// gather back into the whole model's tensors (full_tensor_parallel_parameter).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/parallel/tensor/parallelize.h"
#include "accel/state.h"
#include "gpt2/model.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

template <class Fn>
void expect_refusal(Fn fn, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one saying: " << part;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

std::vector<std::vector<int64_t>> shapes(torch::nn::Module& m) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& p : m.parameters()) out.push_back(p.sizes().vec());
  return out;
}

}  // namespace

TEST(TensorParallelPlan, UnknownStyleListsTheKnownOnes) {
  expect_refusal([] { TensorParallelStyle("colwize"); },
                 "unknown tensor-parallel style \"colwize\" (known: colwise, colwise_rep, packed_colwise, rowwise");
  EXPECT_EQ(TensorParallelStyle("vocab").name(), "embedding_rowwise");
  EXPECT_EQ(TensorParallelStyle::packed_colwise(3).name(), "packed_colwise(3)");
  EXPECT_EQ(TensorParallelStyle("packed_colwise").packed, 2);
}

TEST(TensorParallelPlan, RefusesBadPlansAndLeavesTheModelWhole) {
  run_distributed(2, [] {
    const auto tp = state().process_group();
    seed_cpu(3);
    gpt2::GPT2 model(gpt2::named_config("tiny"));
    const auto before = shapes(*model);
    // The first entry is fine: a refusal of a later one must not leave it split.
    expect_refusal(
        [&] {
          parallelize_tensor(*model, tp,
                             {{"transformer.h.*.mlp.c_fc", "colwise"}, {"transformer.h.*.q_proj", "colwise"}});
        },
        "tensor-parallel plan: \"transformer.h.*.q_proj\" matches no module of the model");
    expect_refusal(
        [&] {
          parallelize_tensor(*model, tp, {{"transformer.h.0.ln_1", "colwise"}});
        },
        "module \"transformer.h.0.ln_1\" (colwise) is a torch::nn::LayerNorm, expected a torch::nn::Linear");
    expect_refusal(
        [&] {
          parallelize_tensor(*model, tp, {{"transformer.wte", "rowwise"}});
        },
        "module \"transformer.wte\" (rowwise) is a torch::nn::Embedding, expected a torch::nn::Linear");
    expect_refusal(
        [&] {
          parallelize_tensor(*model, tp, {{"transformer.h.0.mlp.c_fc", "vocab"}});
        },
        "expected a torch::nn::Embedding");
    expect_refusal(
        [&] {
          parallelize_tensor(*model, tp,
                             {{"transformer.h.*.mlp.c_fc", "colwise"}, {"transformer.h.1.mlp.c_fc", "colwise"}});
        },
        "module \"transformer.h.1.mlp.c_fc\" is named by \"transformer.h.*.mlp.c_fc\" and by "
        "\"transformer.h.1.mlp.c_fc\"");
    EXPECT_EQ(shapes(*model), before);

    torch::nn::Sequential odd(torch::nn::Linear(4, 5), torch::nn::Linear(5, 4));
    expect_refusal(
        [&] {
          parallelize_tensor(*odd, tp, {{"0", "colwise"}});
        },
        "module \"0\" (colwise) has 5 out-features, not a multiple of 2 (the tensor-parallel size)");
    expect_refusal(
        [&] {
          parallelize_tensor(*odd, tp, {{"1", "rowwise"}});
        },
        "module \"1\" (rowwise) has 5 in-features, not a multiple of 2");
    torch::nn::Sequential fused(torch::nn::Linear(4, 6));
    expect_refusal(
        [&] {
          parallelize_tensor(*fused, tp, {{"0", TensorParallelStyle::packed_colwise(2)}});
        },
        "has 6 out-features, not a multiple of 4 (2 packed blocks x tensor-parallel size 2)");

    gpt2::parallelize_tensor(model, tp);
    EXPECT_NE(shapes(*model), before);
    expect_refusal([&] { gpt2::parallelize_tensor(model, tp); }, "module \"transformer.wte\" is already split");
  });
}

TEST(TensorParallelPlan, GPT2HeadsMustDivide) {
  run_distributed(3, [] {
    gpt2::GPT2 model(gpt2::named_config("tiny"));  // 4 heads
    expect_refusal([&] { gpt2::parallelize_tensor(model, state().process_group()); },
                   "the tensor-parallel size 3 does not divide n_head = 4");
  });
}

TEST(TensorParallelPlan, GPT2UnevenVocabularyGivesTheWholeLogits) {
  run_distributed(2, [] {
    auto options = gpt2::named_config("tiny").vocab_size(509);
    auto g = at::detail::createCPUGenerator(8);
    auto tokens = torch::randint(0, 509, {2, 12}, g);
    seed_cpu(5);
    gpt2::GPT2 whole(options);
    whole->eval();
    auto want = whole(tokens).detach();
    seed_cpu(5);
    gpt2::GPT2 split(options);
    split->eval();
    gpt2::parallelize_tensor(split, state().process_group());
    EXPECT_EQ(split->transformer->wte->weight.size(0), state().rank() == 0 ? 255 : 254);
    auto got = split(tokens);
    EXPECT_EQ(got.sizes(), want.sizes());
    EXPECT_LT(max_diff(got, want), 1e-5);
    // Every slice, the uneven vocabulary's included, gathers back into the
    // whole model's tensor, and that cuts back into the slice.
    auto whole_params = whole->named_parameters();
    for (const auto& p : split->named_parameters()) {
      const auto full = full_tensor_parallel_parameter(p.value());
      EXPECT_TRUE(full.equal(whole_params[p.key()])) << p.key();
      EXPECT_TRUE(tensor_parallel_slice_of(p.value(), full).equal(p.value())) << p.key();
    }
    expect_refusal(
        [&] {
          tensor_parallel_slice_of(split->transformer->wte->weight, torch::zeros({508, 4}));
        },
        "vocabulary of 509 rows");
  });
}
