// Pipeline parallelism through the Accelerator (parallel/pipeline/
// accelerated_step.h): the GPT-2 example's tiny model cut into 2 stages,
// each rank preparing its StageModule and the stage's AdamW, the batches
// from a prepared loader, 3 steps of pipeline_step (1F1B, 4 micro-batches
// per replica; GPipe too with DDP) with clip_pipeline_grad_norm_ active. Each layout equals
// the same model trained in one process: the same losses (the replicas'
// mean) and clipped norms each step, every parameter within 1e-5.
//
//   pp=2 x dp=2 with DDP: the stages' gradients averaged over "dp" once,
//     in each step's last backward.
//   pp=2 x dp=2 with ZeRO-2 (shard_grad_op): reduced in every backward,
//     the tied embedding's two copies summed before their reduction.
//   pp=2 x tp=2 (4 ranks), pp=2 x tp=2 x dp=2 with DDP (8 ranks).
//
// Each rank checks its own stage's parameters (reassembled from tp slices
// where split), under the whole model's names; all ranks together check
// every parameter. The reference runs in each rank (autograd must not run
// in the parent before the fork).
#include <gtest/gtest.h>

#include <limits>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/amp/autocast.h"

#include <ATen/autocast_mode.h>
#include "accel/data/data_loader.h"
#include "accel/optim/clip_grad.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/pipeline/accelerated_step.h"
#include "accel/parallel/tensor/parallelize.h"
#include "gpt2/model.h"
#include "gpt2/pipeline_parallel.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/gpt2_one_process.h"
#include "support/gpt2_split.h"
#include "support/split_run_check.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

// eps 1e-6: the comparisons are within 1e-5 (see Gpt2Run).
constexpr accel::testing::Gpt2Run kRun{.rows_per_step = 8, .rows_seed = 900, .model_seed = 17, .eps = 1e-6};
constexpr int64_t kRowsPerStep = kRun.rows_per_step, kSeq = kRun.seq, kMicro = 4;
constexpr double kMaxNorm = kRun.max_norm;
using Trace = accel::testing::Gpt2Trace;
torch::Tensor all_rows(int64_t vocab) { return accel::testing::token_rows(kRun, vocab); }
std::shared_ptr<torch::optim::AdamW> adamw(const std::vector<torch::Tensor>& params) {
  return accel::testing::adamw(kRun, params);
}
Trace single_process(MixedPrecision mp = MixedPrecision::no) { return accel::testing::one_process(kRun, mp); }

// Whether each stage's forward and the last stage's loss ran under autocast.
struct AutocastSeen {
  bool forward = false, loss = false;
};

// The loop a user writes: cut the model, prepare the stage, step it.
// Under gradient accumulation each optimizer step takes the same rows in
// acc.gradient_accumulation_steps() loader batches, each one pipeline_step
// inside accumulate() with as many fewer micro-batches.
// `sequence_parallel`: the tp plan's sequence-parallel form.
Trace through_accelerator(Accelerator& acc, AutocastSeen* seen = nullptr,
                          PipelineScheduleKind schedule = PipelineScheduleKind::one_f_one_b,
                          bool sequence_parallel = false) {
  const DeviceMesh* mesh = acc.device_mesh();
  EXPECT_NE(mesh, nullptr);
  const bool tp = mesh->config().tp_size > 1;
  seed_cpu(17);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  if (tp) gpt2::parallelize_tensor(model, mesh->group("tp"), sequence_parallel);
  auto cut = gpt2::pipeline_stage(model, mesh->group("pp"));
  if (seen) {
    cut.forward = [seen, f = cut.forward](const torch::Tensor& x) {
      seen->forward = at::autocast::is_autocast_enabled(torch::kCPU);
      return f(x);
    };
    if (cut.loss)
      cut.loss = [seen, f = cut.loss](const torch::Tensor& out, const torch::Tensor& target) {
        seen->loss = at::autocast::is_autocast_enabled(torch::kCPU);
        return f(out, target);
      };
  }
  auto stage = StageModule(*model, std::move(cut));
  const auto rows = all_rows(model->options().vocab_size());
  const int64_t accumulation = acc.gradient_accumulation_steps();
  const int64_t per_replica = kRowsPerStep / acc.data_parallel_size() / accumulation;
  auto data =
      make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"tokens", rows}}), DataLoaderOptions(per_replica));
  auto [prepared, opt, loader] = acc.prepare(stage, adamw(stage->parameters()), data);
  Trace t;
  double loss_sum = 0;
  for (auto& batch : loader) {
    const auto& tokens = batch["tokens"];
    EXPECT_EQ(tokens.size(0), per_replica);
    auto scope = acc.accumulate(prepared);
    auto loss = pipeline_step(acc, prepared, schedule, kMicro / accumulation, tokens.narrow(1, 0, kSeq).contiguous(),
                              tokens.narrow(1, 1, kSeq).contiguous());
    // The whole batch's loss: the mean of the replicas' and the
    // accumulation's equal parts.
    loss_sum += acc.gather_for_metrics(loss.reshape({1})).mean().item<double>();
    if (acc.sync_gradients()) {
      t.norms.push_back(clip_pipeline_grad_norm_(acc, prepared, kMaxNorm).item<double>());
      t.losses.push_back(loss_sum / static_cast<double>(accumulation));
      loss_sum = 0;
    }
    opt->step();
    opt->zero_grad();
  }
  acc.wait_for_everyone();
  for (const auto& p : prepared.module()->named_parameters()) {
    const auto [dim, packed] = accel::testing::gpt2_split_of(p.key());
    const bool split = tp && dim >= 0;
    EXPECT_EQ(is_tensor_parallel_slice(p.value()), split) << p.key();
    t.params[p.key()] = split ? accel::testing::reassemble(p.value().detach(), dim, packed, mesh->group("tp"))
                              : p.value().detach().clone();
  }
  return t;
}

void expect_matches(const Trace& ref, const Trace& got) {
  accel::testing::expect_split_run_matches(ref, got, kMaxNorm);
}

ParallelismConfig pp2() {
  ParallelismConfig c;
  c.pp_size = 2;
  return c;
}

}  // namespace

TEST(PipelineAccelerator, TwoStagesByTwoDataParallelDdpEqualsOneProcess) {
  run_distributed(4, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.dp_replicate_size = 2;
    // GPipe too: its last backward comes after every forward, 1F1B's not.
    for (const auto schedule : {PipelineScheduleKind::one_f_one_b, PipelineScheduleKind::gpipe}) {
      SCOPED_TRACE(to_string(schedule));
      Accelerator acc(AcceleratorOptions().parallelism_config(c));
      EXPECT_EQ(acc.data_parallel_size(), 2);
      // Mesh order pp, dp_replicate: ranks 0,1 are stage 0, ranks 2,3 stage 1.
      EXPECT_EQ(acc.data_parallel_index(), acc.process_index() % 2);
      expect_matches(ref, through_accelerator(acc, nullptr, schedule));
    }
  });
}

TEST(PipelineAccelerator, TwoStagesByTwoDataParallelZeroEqualsOneProcess) {
  // ZeRO-2 reduces in every backward; ZeRO-1 once, at the optimizer step.
  run_distributed(4, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.dp_shard_size = 2;
    for (const auto strategy : {ShardingStrategy::shard_grad_op, ShardingStrategy::shard_optimizer}) {
      SCOPED_TRACE(to_string(strategy));
      Accelerator acc(AcceleratorOptions().parallelism_config(c).sharding(ShardingOptions().strategy(strategy)));
      EXPECT_EQ(acc.data_parallel_size(), 2);
      expect_matches(ref, through_accelerator(acc));
    }
  });
}

TEST(PipelineAccelerator, GradientAccumulationEqualsOneProcess) {
  // gradient_accumulation_steps 2: each optimizer step's rows in two
  // pipeline_steps of half the micro-batches inside accumulate(). Only the
  // second reduces and sums the tied copies; each counts half. Under DDP
  // (no_sync on the first), ZeRO-1, ZeRO-2 (reduces in both), and with no
  // data parallelism: equal to one process's whole batches.
  run_distributed(4, [] {
    const auto ref = single_process();
    for (const auto strategy : {std::optional<ShardingStrategy>(), std::optional(ShardingStrategy::shard_optimizer),
                                std::optional(ShardingStrategy::shard_grad_op)}) {
      SCOPED_TRACE(strategy ? to_string(*strategy) : "DDP");
      auto c = pp2();
      (strategy ? c.dp_shard_size : c.dp_replicate_size) = 2;
      auto options = AcceleratorOptions().parallelism_config(c).gradient_accumulation_steps(2);
      if (strategy) options.sharding(ShardingOptions().strategy(*strategy));
      Accelerator acc(options);
      expect_matches(ref, through_accelerator(acc));
    }
  });
  run_distributed(2, [] {
    const auto ref = single_process();
    Accelerator acc(AcceleratorOptions().parallelism_config(pp2()).gradient_accumulation_steps(2));
    expect_matches(ref, through_accelerator(acc));
  });
}

TEST(PipelineAccelerator, TwoStagesByTwoTensorParallelEqualsOneProcess) {
  run_distributed(4, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.tp_size = 2;
    Accelerator acc(AcceleratorOptions().parallelism_config(c));
    EXPECT_EQ(acc.data_parallel_size(), 1);
    expect_matches(ref, through_accelerator(acc));
  });
}

TEST(PipelineAccelerator, TwoStagesByTwoTensorParallelWithSequenceParallelEqualsOneProcess) {
  // Sequence parallel inside the stages: the first stage scatters the
  // embeddings' sequence over the tp ranks, the stages send each other
  // their tp rank's slice of it, and the last gathers it back after ln_f.
  run_distributed(4, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.tp_size = 2;
    Accelerator acc(AcceleratorOptions().parallelism_config(c));
    expect_matches(ref, through_accelerator(acc, nullptr, PipelineScheduleKind::one_f_one_b,
                                            /*sequence_parallel=*/true));
  });
}

TEST(PipelineAccelerator, ThreeDimensionsOnEightRanksEqualOneProcess) {
  // pp x dp x tp: tensor parallel composes with dp_shard (Accelerate's rule).
  run_distributed(8, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.dp_shard_size = 2;
    c.tp_size = 2;
    Accelerator acc(AcceleratorOptions().parallelism_config(c));
    EXPECT_EQ(acc.data_parallel_size(), 2);
    expect_matches(ref, through_accelerator(acc));
  });
}

TEST(PipelineAccelerator, BFloat16AutocastRunsInEveryStage) {
  // Each micro-batch runs through the prepared stage, so under
  // mixed_precision bf16 its forward and the loss run under autocast, as
  // one process's forward does (the flags are the check: bf16 and fp32
  // losses differ by less than bf16's rounding noise here). The losses and
  // norms stay close to one process's bf16 run; the parameters are not
  // compared: Adam turns bf16 gradient noise on near-zero elements into
  // whole-step differences.
  run_distributed(4, [] {
    const auto ref = single_process(MixedPrecision::bf16);
    auto c = pp2();
    c.dp_replicate_size = 2;
    Accelerator acc(AcceleratorOptions().parallelism_config(c).mixed_precision("bf16"));
    AutocastSeen seen;
    const auto got = through_accelerator(acc, &seen);
    EXPECT_TRUE(seen.forward);
    if (acc.device_mesh()->coordinate("pp") == 1) EXPECT_TRUE(seen.loss);
    ASSERT_EQ(got.losses.size(), ref.losses.size());
    for (size_t s = 0; s < ref.losses.size(); ++s) {
      EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-3) << "loss at step " << s;
      EXPECT_NEAR(got.norms[s], ref.norms[s], 1e-2 * ref.norms[s]) << "gradient norm at step " << s;
    }
  });
}

TEST(PipelineAccelerator, BFloat16MasterWeightsTrainEveryStage) {
  // master_weights keeps each stage's parameters in bf16 (fp32 masters in
  // the optimizer), as it keeps the whole model's. The second stage
  // receives the first one's output converted to fp32 as the prepared model
  // returns it, and takes it back in bf16, as the whole model's next block
  // would see it (CPU LayerNorms refuse fp32 input with bf16 weights). The
  // losses and norms stay close to one process's bf16 autocast run (fp32
  // weights: within bf16's rounding of the weights).
  run_distributed(2, [] {
    const auto ref = single_process(MixedPrecision::bf16);
    Accelerator acc(AcceleratorOptions().parallelism_config(pp2()).mixed_precision("bf16").master_weights(true));
    const auto got = through_accelerator(acc);
    for (const auto& [name, p] : got.params) EXPECT_EQ(p.scalar_type(), torch::kBFloat16) << name;
    ASSERT_EQ(got.losses.size(), ref.losses.size());
    for (size_t s = 0; s < ref.losses.size(); ++s) {
      EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-2) << "loss at step " << s;
      EXPECT_NEAR(got.norms[s], ref.norms[s], 5e-2 * ref.norms[s]) << "gradient norm at step " << s;
    }
  });
}

TEST(PipelineAccelerator, Fp16ScalesTheLossAndAnOverflowSkipsEveryStage) {
  // fp16: the last stage scales its losses by the GradScaler's scale, the
  // first receives scaled gradients, both optimizers unscale. Trained so,
  // the losses and norms track one process's fp16 autocast run. An inf in
  // the first stage's gradients skips the step on both stages and halves
  // the scale everywhere.
  run_distributed(2, [] {
    const auto ref = single_process(MixedPrecision::fp16);
    {
      Accelerator acc(AcceleratorOptions().parallelism_config(pp2()).mixed_precision("fp16"));
      const auto got = through_accelerator(acc);
      ASSERT_EQ(got.losses.size(), ref.losses.size());
      for (size_t s = 0; s < ref.losses.size(); ++s) {
        EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-2) << "loss at step " << s;
        EXPECT_NEAR(got.norms[s], ref.norms[s], 5e-2 * ref.norms[s]) << "gradient norm at step " << s;
      }
    }
    Accelerator acc(AcceleratorOptions().parallelism_config(pp2()).mixed_precision("fp16"));
    seed_cpu(17);
    gpt2::GPT2 model(gpt2::named_config("tiny"));
    auto stage = StageModule(*model, gpt2::pipeline_stage(model, acc.device_mesh()->group("pp")));
    auto [prepared, opt] = acc.prepare(stage, adamw(stage->parameters()));
    const auto rows = all_rows(model->options().vocab_size()).narrow(0, 0, kRowsPerStep);
    (void)pipeline_step(acc, prepared, PipelineScheduleKind::one_f_one_b, kMicro, rows.narrow(1, 0, kSeq).contiguous(),
                        rows.narrow(1, 1, kSeq).contiguous());
    const double scale = acc.scaler()->get_scale();
    if (acc.device_mesh()->coordinate("pp") == 0) {
      torch::NoGradGuard no_grad;
      stage->parameters().front().mutable_grad().view(-1)[0] = std::numeric_limits<float>::infinity();
    }
    std::vector<torch::Tensor> before;
    for (const auto& p : stage->parameters()) before.push_back(p.detach().clone());
    opt->step();
    EXPECT_TRUE(opt->step_was_skipped());
    for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(stage->parameters()[i].equal(before[i])) << i;
    EXPECT_EQ(acc.scaler()->get_scale(), scale / 2);
  });
}

TEST(PipelineAccelerator, RefusesToSumTheTiedGradientsTwiceIntoOneAccumulation) {
  // Two pipeline_steps before one zero_grad: the first summed the tied
  // copies' gradients over both stages; the second would add its own
  // backward to those sums and sum again, counting the other stage's part
  // of the first twice. Both stages refuse, before any backward; after
  // zero_grad the step runs.
  run_distributed(2, [] {
    Accelerator acc(AcceleratorOptions().parallelism_config(pp2()));
    seed_cpu(17);
    gpt2::GPT2 model(gpt2::named_config("tiny"));
    auto stage = StageModule(*model, gpt2::pipeline_stage(model, acc.device_mesh()->group("pp")));
    auto [prepared, opt] = acc.prepare(stage, adamw(stage->parameters()));
    const auto rows = all_rows(model->options().vocab_size());
    auto step = [&](int64_t i) {
      auto batch = rows.narrow(0, i * kRowsPerStep, kRowsPerStep);
      return pipeline_step(acc, prepared, PipelineScheduleKind::one_f_one_b, kMicro,
                           batch.narrow(1, 0, kSeq).contiguous(), batch.narrow(1, 1, kSeq).contiguous());
    };
    (void)step(0);
    accel::testing::expect_error<std::logic_error>(
        [&] { (void)step(1); }, {"stage " + std::to_string(acc.process_index()), "count the other stage's part twice",
                                 "accelerator.accumulate"});
    opt->zero_grad();
    EXPECT_TRUE(std::isfinite(step(1).item<double>()));
  });
}

TEST(PipelineAccelerator, RefusesWhatItDoesNotBuild) {
  run_distributed(2, [] {
    Accelerator acc(AcceleratorOptions().parallelism_config(pp2()));
    seed_cpu(17);
    gpt2::GPT2 model(gpt2::named_config("tiny"));
    auto stage = StageModule(*model, gpt2::pipeline_stage(model, acc.device_mesh()->group("pp")));
    // A stage cut from another model.
    gpt2::GPT2 other(gpt2::named_config("tiny"));
    accel::testing::expect_error([&] { StageModule(*other, stage->stage()); },
                                 {"stage " + std::to_string(acc.process_index()), "not a parameter of the model"});
    auto [prepared, opt] = acc.prepare(stage, adamw(stage->parameters()));
    // The Accelerator's own clip would take one stage's norm for the model's.
    accel::testing::expect_error([&] { (void)acc.clip_grad_norm_(stage->parameters(), 1.0); },
                                 {"pp_size is 2", "clip_pipeline_grad_norm_"});
  });
}
