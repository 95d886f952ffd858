// The GPT-2 example's tiny model trained with pipeline parallelism equals
// the same model trained in one process: 3 AdamW steps (fp32) on a batch of
// 4 sequences with gradient clipping active, the same losses and clipped
// norms each step, and every parameter within 1e-5.
//
//   PP=2, 1F1B and GPipe, 4 micro-batches of one sequence.
//   PP=4 over a 4-block GPT-2 (middle stages that both receive and send;
//   the tied embedding between stages 0 and 3), 1F1B, 4 micro-batches.
//   PP=2 x TP=2 on 4 ranks: each stage split by tensor parallelism.
//   PP=2 x DP=2 on 4 ranks: each data-parallel replica runs a pipeline over
//   half the batch (2 micro-batches); the gradients are averaged over the
//   mesh's dp_replicate group by hand (the Accelerator does not take a
//   mesh yet), as the TP x DP test does with DDP.
//   PP=2 x DP=2 x TP=2 on 8 ranks (dp over dp_shard).
//
// Each rank checks the parameters of its own stage (reassembled from the tp
// slices where split); all ranks' names together must be every parameter.
// The reference runs in each rank (autograd must not run in the parent
// before the fork).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/dist/collectives.h"
#include "accel/optim/clip_grad.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/pipeline/clip.h"
#include "accel/parallel/pipeline/runner.h"
#include "accel/parallel/tensor/parallelize.h"
#include "accel/state.h"
#include "gpt2/model.h"
#include "gpt2/pipeline_parallel.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/gpt2_split.h"
#include "support/split_run_check.h"
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

gpt2::GPT2Options options(int64_t layers) { return gpt2::named_config("tiny").n_layer(layers); }

std::pair<torch::Tensor, torch::Tensor> batch(int step, int64_t vocab) {
  auto g = at::detail::createCPUGenerator(700 + step);
  auto tokens = torch::randint(0, vocab, {kBatch, kSeq + 1}, g);
  return {tokens.narrow(1, 0, kSeq).contiguous(), tokens.narrow(1, 1, kSeq).contiguous()};
}

Trace single_process(int64_t layers) {
  seed_cpu(13);
  gpt2::GPT2 model(options(layers));
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(kLr).weight_decay(0.1));
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

struct Layout {
  ProcessGroupPtr pp, tp, dp;  // tp, dp may be null
  PipelineScheduleKind schedule = PipelineScheduleKind::one_f_one_b;
  int64_t layers = 2;
  int64_t microbatches = 4;  // per data-parallel replica
};

Trace pipeline_parallel(const Layout& l) {
  seed_cpu(13);
  gpt2::GPT2 model(options(l.layers));
  if (l.tp) gpt2::parallelize_tensor(model, l.tp);
  auto stage = gpt2::pipeline_stage(model, l.pp);
  torch::optim::AdamW opt(stage.parameters, torch::optim::AdamWOptions(kLr).weight_decay(0.1));
  const int64_t dp_size = l.dp ? l.dp->getSize() : 1, dp_rank = l.dp ? l.dp->getRank() : 0;
  Trace t;
  for (int step = 0; step < kSteps; ++step) {
    auto [tokens, targets] = batch(step, model->options().vocab_size());
    const int64_t rows = kBatch / dp_size;
    tokens = tokens.narrow(0, dp_rank * rows, rows);
    targets = targets.narrow(0, dp_rank * rows, rows);
    opt.zero_grad();
    auto loss =
        run_pipeline(stage, l.schedule, l.microbatches,
                     stage.is_first() ? split_microbatches(tokens, l.microbatches) : std::vector<torch::Tensor>{},
                     stage.is_last() ? split_microbatches(targets, l.microbatches) : std::vector<torch::Tensor>{});
    if (l.dp) {
      for (auto& p : stage.parameters) all_reduce_(p.mutable_grad(), ReduceOp::mean, l.dp);
      loss = reduce(loss, ReduceOp::mean, l.dp);
    }
    sum_tied_gradients(stage);
    auto grads = stage_gradients(stage);
    t.norms.push_back(clip_grad_norm_across_stages(grads, l.pp, kMaxNorm).item<double>());
    opt.step();
    t.losses.push_back(loss.item<double>());
  }
  for (const auto& p : model->named_parameters()) {
    const bool mine = std::any_of(stage.parameters.begin(), stage.parameters.end(),
                                  [&](const torch::Tensor& s) { return s.is_same(p.value()); });
    if (!mine) {
      EXPECT_EQ(p.value().numel(), 0) << p.key() << ": another stage's parameter is not released";
      continue;
    }
    const auto [dim, packed] = accel::testing::gpt2_split_of(p.key());
    const bool split = l.tp && dim >= 0;
    EXPECT_EQ(is_tensor_parallel_slice(p.value()), split) << p.key();
    t.params[p.key()] =
        split ? accel::testing::reassemble(p.value().detach(), dim, packed, l.tp) : p.value().detach().clone();
  }
  // The tied embedding's two copies (first and last stage) are identical to the bit.
  if (stage.num_stages > 1 && (stage.is_first() || stage.is_last())) {
    const auto wte = stage.tied.at(0).detach();
    std::vector<torch::Tensor> other{torch::empty_like(wte)};
    std::vector<torch::Tensor> out{wte.contiguous()};
    auto send = l.pp->send(out, stage.tied_stage, 99);
    l.pp->recv(other, stage.tied_stage, 99)->wait();
    send->wait();
    EXPECT_TRUE(torch::equal(other[0], wte)) << "the tied wte copies differ by " << max_diff(other[0], wte);
  }
  return t;
}

void expect_matches(const Trace& ref, const Trace& got) {
  accel::testing::expect_split_run_matches(ref, got, kMaxNorm);
}

void run_layout(const ParallelismConfig& config, PipelineScheduleKind schedule, int64_t layers = 2) {
  const auto ref = single_process(layers);
  DeviceMesh mesh(state(), config);
  Layout l;
  l.pp = mesh.group("pp");
  if (config.tp_size > 1) l.tp = mesh.group("tp");
  if (config.dp_replicate_size > 1) l.dp = mesh.group("dp_replicate");
  if (config.dp_shard_size > 1) l.dp = mesh.group("dp_shard");
  l.schedule = schedule;
  l.layers = layers;
  l.microbatches = l.dp ? kBatch / l.dp->getSize() : 4;
  expect_matches(ref, pipeline_parallel(l));
}

ParallelismConfig pp(int pp_size) {
  ParallelismConfig c;
  c.pp_size = pp_size;
  return c;
}

}  // namespace

TEST(PipelineParallelGPT2, OneFOneBTwoStagesEqualsOneProcess) {
  run_distributed(2, [] { run_layout(pp(2), PipelineScheduleKind::one_f_one_b); });
}

TEST(PipelineParallelGPT2, GPipeTwoStagesEqualsOneProcess) {
  run_distributed(2, [] { run_layout(pp(2), PipelineScheduleKind::gpipe); });
}

TEST(PipelineParallelGPT2, OneFOneBFourStagesEqualsOneProcess) {
  run_distributed(4, [] { run_layout(pp(4), PipelineScheduleKind::one_f_one_b, /*layers=*/4); });
}

TEST(PipelineParallelGPT2, TwoStagesByTwoTensorParallelEqualsOneProcess) {
  run_distributed(4, [] {
    auto c = pp(2);
    c.tp_size = 2;
    run_layout(c, PipelineScheduleKind::one_f_one_b);
  });
}

TEST(PipelineParallelGPT2, TwoStagesByTwoDataParallelEqualsOneProcess) {
  run_distributed(4, [] {
    auto c = pp(2);
    c.dp_replicate_size = 2;
    run_layout(c, PipelineScheduleKind::one_f_one_b);
  });
}

TEST(PipelineParallelGPT2, ThreeDimensionsOnEightRanksEqualOneProcess) {
  // pp x dp x tp: tensor parallel composes with dp_shard, not with pure
  // replication (Accelerate's rule), so the data-parallel dimension is dp_shard.
  run_distributed(8, [] {
    auto c = pp(2);
    c.dp_shard_size = 2;
    c.tp_size = 2;
    run_layout(c, PipelineScheduleKind::one_f_one_b);
  });
}
