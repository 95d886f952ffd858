// The GPT-2 example's tiny model trained with tensor parallelism equals the
// same model trained in one process: 3 AdamW steps (fp32) with gradient
// clipping active, the same losses and clipped norms each step, and every
// parameter, reassembled from the ranks' slices, within 1e-5.
//
//   TP=2 on 2 ranks: each rank sees the whole batch.
//   TP=2 x DP=2 on 4 ranks: a mesh of dp_shard=2 x tp=2 (Accelerate refuses
//   tensor parallel over dp_replicate alone); the two halves of the batch go
//   to the two data-parallel ranks, whose gradients accel's DDP averages
//   over the mesh's dp_shard group. (The loop is written out here, without
//   the Accelerator.)
//   Both again with sequence parallel (the plan's sequence-parallel form):
//   the LayerNorms and the residual stream on half the sequence.
//
// The reference runs in each rank (autograd must not run in the parent
// before the fork). The reassembly is the test's own: it knows from the
// names which dimension the plan split.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/dist/collectives.h"
#include "accel/optim/clip_grad.h"
#include "accel/optim/grad_norm.h"
#include "accel/parallel/ddp.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallelize.h"
#include "accel/state.h"
#include "gpt2/kv_cache.h"
#include "gpt2/model.h"
#include "gpt2/pipeline_parallel.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/gpt2_split.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

constexpr int kSteps = 3;
constexpr int64_t kBatch = 4, kSeq = 32;
constexpr double kMaxNorm = 0.5, kLr = 1e-3;

struct Trace {
  std::vector<double> losses, norms;
  std::map<std::string, torch::Tensor> params;
};

std::pair<torch::Tensor, torch::Tensor> batch(int step, int64_t vocab) {
  auto g = at::detail::createCPUGenerator(500 + step);
  auto tokens = torch::randint(0, vocab, {kBatch, kSeq + 1}, g);
  return {tokens.narrow(1, 0, kSeq).contiguous(), tokens.narrow(1, 1, kSeq).contiguous()};
}

torch::optim::AdamW adamw(gpt2::GPT2& model) {
  return torch::optim::AdamW(model->parameters(), torch::optim::AdamWOptions(kLr).weight_decay(0.1));
}

Trace single_process() {
  seed_cpu(11);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  auto opt = adamw(model);
  Trace t;
  for (int step = 0; step < kSteps; ++step) {
    auto [tokens, targets] = batch(step, model->options().vocab_size());
    opt.zero_grad();
    auto loss = model(tokens, targets);
    loss.backward();
    t.norms.push_back(clip_grad_norm(model->parameters(), kMaxNorm).item<double>());
    opt.step();
    t.losses.push_back(loss.item<double>());
  }
  for (const auto& p : model->named_parameters()) t.params[p.key()] = p.value().detach().clone();
  return t;
}

void expect_matches(const Trace& ref, const Trace& got) {
  ASSERT_EQ(got.losses.size(), ref.losses.size());
  for (int s = 0; s < kSteps; ++s) {
    EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-5) << "loss at step " << s;
    EXPECT_NEAR(got.norms[s], ref.norms[s], 1e-5) << "gradient norm at step " << s;
  }
  // Clipping must have acted, or the norm would be untested.
  EXPECT_GT(ref.norms[0], kMaxNorm);
  ASSERT_EQ(got.params.size(), ref.params.size());
  for (const auto& [name, want] : ref.params) {
    ASSERT_TRUE(got.params.count(name)) << name;
    EXPECT_EQ(got.params.at(name).sizes(), want.sizes()) << name;
    EXPECT_LT(max_diff(got.params.at(name), want), 1e-5) << name;
  }
}

// Trains the tp-split model; `dp` (may be null) is the data-parallel group.
// `sequence_parallel`: the plan's sequence-parallel form.
Trace tensor_parallel(const ProcessGroupPtr& tp, const ProcessGroupPtr& dp, bool sequence_parallel = false) {
  seed_cpu(11);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  gpt2::parallelize_tensor(model, tp, sequence_parallel);
  if (sequence_parallel) {
    // The LayerNorms run on half the sequence: the region is entered at h.0.ln_1.
    auto& block = *model->transformer->h[0]->as<gpt2::BlockImpl>();
    EXPECT_EQ(accel::enter_sequence_parallel(*block.ln_1, torch::zeros({kBatch, kSeq, 64})).size(1),
              kSeq / tp->getSize());
  }
  std::optional<DistributedDataParallel<gpt2::GPT2>> ddp;
  if (dp) ddp.emplace(model, dp);
  auto opt = adamw(model);
  Trace t;
  const int64_t dp_size = dp ? dp->getSize() : 1, dp_rank = dp ? dp->getRank() : 0;
  for (int step = 0; step < kSteps; ++step) {
    auto [tokens, targets] = batch(step, model->options().vocab_size());
    const int64_t rows = kBatch / dp_size;
    tokens = tokens.narrow(0, dp_rank * rows, rows);
    targets = targets.narrow(0, dp_rank * rows, rows);
    opt.zero_grad();
    auto loss = ddp ? (*ddp)(tokens, targets) : model(tokens, targets);
    loss.backward();
    auto grads = tensor_parallel_gradients(model->parameters());
    EXPECT_FALSE(grads.sharded.empty());
    t.norms.push_back(clip_grad_norm_(grads, kMaxNorm).item<double>());
    opt.step();
    // The whole batch's loss: the mean of the equal halves' losses.
    t.losses.push_back(dp ? reduce(loss.detach(), ReduceOp::mean, dp).item<double>() : loss.item<double>());
  }
  for (const auto& p : model->named_parameters()) {
    const auto [dim, packed] = accel::testing::gpt2_split_of(p.key());
    EXPECT_EQ(is_tensor_parallel_slice(p.value()), dim >= 0) << p.key();
    t.params[p.key()] =
        dim < 0 ? p.value().detach().clone() : accel::testing::reassemble(p.value().detach(), dim, packed, tp);
  }
  return t;
}

}  // namespace

TEST(TensorParallelGPT2, TwoRanksEqualOneProcess) {
  run_distributed(2, [] {
    const auto ref = single_process();
    ParallelismConfig config;
    config.tp_size = 2;
    DeviceMesh mesh(state(), config);
    expect_matches(ref, tensor_parallel(mesh.group("tp"), nullptr));
  });
}

TEST(TensorParallelGPT2, TwoByTwoWithDataParallelEqualsOneProcess) {
  run_distributed(4, [] {
    const auto ref = single_process();
    ParallelismConfig config;
    config.dp_shard_size = 2;
    config.tp_size = 2;
    DeviceMesh mesh(state(), config);
    expect_matches(ref, tensor_parallel(mesh.group("tp"), mesh.group("dp_shard")));
  });
}

// Megatron-LM's sequence parallel on top: the LayerNorms, residual dropouts
// and residual stream hold half the sequence on each rank; the norms'
// weights and the row-parallel biases sum their gradients over tp.
TEST(TensorParallelGPT2, TwoRanksWithSequenceParallelEqualOneProcess) {
  run_distributed(2, [] {
    const auto ref = single_process();
    ParallelismConfig config;
    config.tp_size = 2;
    DeviceMesh mesh(state(), config);
    expect_matches(ref, tensor_parallel(mesh.group("tp"), nullptr, /*sequence_parallel=*/true));
  });
}

TEST(TensorParallelGPT2, SequenceParallelWithDataParallelEqualsOneProcess) {
  run_distributed(4, [] {
    const auto ref = single_process();
    ParallelismConfig config;
    config.dp_shard_size = 2;
    config.tp_size = 2;
    DeviceMesh mesh(state(), config);
    expect_matches(ref, tensor_parallel(mesh.group("tp"), mesh.group("dp_shard"), /*sequence_parallel=*/true));
  });
}

TEST(TensorParallelGPT2, SequenceParallelRefusesGeneration) {
  run_distributed(2, [] {
    ParallelismConfig config;
    config.tp_size = 2;
    DeviceMesh mesh(state(), config);
    seed_cpu(11);
    gpt2::GPT2 model(gpt2::named_config("tiny"));
    gpt2::parallelize_tensor(model, mesh.group("tp"), /*sequence_parallel=*/true);
    gpt2::KVCache cache(model->options().n_layer());
    accel::testing::expect_error<c10::Error>(
        [&] {
          model->forward(torch::zeros({1, 4}, torch::kLong), torch::Tensor(), &cache);
        },
        {"KV cache", "sequence_parallel"});
  });
}
