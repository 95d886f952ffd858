// Pipeline stages with parameter sharding through the Accelerator
// (parallel/pipeline/accelerated_step.h): the GPT-2 example's tiny model
// cut into 2 stages, each rank preparing its StageModule, which full_shard
// splits over the dp_shard ranks of its pp slice (hybrid_shard: and
// replicates over dp_replicate), 3 steps of pipeline_step (4 micro-batches
// per replica) with clip_pipeline_grad_norm_ active. Each layout equals
// the same model trained in one process: the same losses (the replicas'
// mean) and clipped norms each step, every parameter within 1e-5.
//
//   pp=2 x dp_shard=2 full_shard, 1F1B and GPipe (4 ranks): the micro-
//     batches' gradients accumulate whole, the tied embedding's two copies
//     are summed, then reduce-scattered once per step; each rank holds
//     its half of its stage, gathered once a step and freed after it.
//   pp=2 x dp_replicate=2 x dp_shard=2 hybrid_shard (8 ranks).
//   pp=2 x tp=2 x dp_shard=2 full_shard (8 ranks): each rank's tp slices
//     and replicated parameters of its stage sharded over dp_shard.
//   bf16: the stage gathered in bf16, close to one process's bf16 run.
//
// Each rank reads its stage's parameters gathered from the shards
// (full_state, reassembled from tp slices where split), under the whole
// model's names; all ranks together check every parameter. The reference
// runs in each rank (autograd must not run in the parent before the fork).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <map>

#include "accel/accelerator.h"
#include "accel/amp/autocast.h"
#include "accel/data/data_loader.h"
#include "accel/optim/clip_grad.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
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
constexpr accel::testing::Gpt2Run kRun{.rows_per_step = 16, .rows_seed = 901, .model_seed = 19, .eps = 1e-6};
constexpr int kSteps = kRun.steps;
constexpr int64_t kRowsPerStep = kRun.rows_per_step, kSeq = kRun.seq, kMicro = 4;  // 4 replicas under hybrid_shard
constexpr double kMaxNorm = kRun.max_norm;

struct Trace : accel::testing::Gpt2Trace {
  torch::ScalarType gathered = torch::kFloat;  // the dtype the stage was gathered in
};

torch::Tensor all_rows(int64_t vocab) { return accel::testing::token_rows(kRun, vocab); }
std::shared_ptr<torch::optim::AdamW> adamw(const std::vector<torch::Tensor>& params) {
  return accel::testing::adamw(kRun, params);
}

// Plain LibTorch, one process, the whole batch each step.
Trace single_process(MixedPrecision mp = MixedPrecision::no) { return Trace{accel::testing::one_process(kRun, mp)}; }

// What full_shard made of this rank's stage: one unit (the stage), whose
// every parameter this rank holds only its piece of, the pieces of the
// shard group's ranks together covering it once; gathered once a step,
// and not between steps.
void expect_stage_sharded(PreparedModelCore& core, const ProcessGroupPtr& shard_group, int64_t accumulation) {
  auto* model = dynamic_cast<fsdp::FullyShardedModel*>(core.sharding());
  ASSERT_NE(model, nullptr) << "the stage is not sharded";
  ASSERT_EQ(model->units().size(), 1u);
  const auto& unit = *model->units().front();
  EXPECT_FALSE(unit.unsharded()) << "the stage stays gathered after the step";
  // Gathered once for each pipeline_step's micro-batches, not once per
  // micro-batch (under accumulation, once per pipeline_step).
  EXPECT_EQ(unit.gathers(), kSteps * accumulation);
  int64_t whole = 0, mine = 0;
  for (size_t i = 0; i < unit.parameters().size(); ++i) {
    whole += unit.parameters()[i].numel();
    mine += unit.piece(i).numel();
  }
  const int ranks = shard_group->getSize();
  EXPECT_LE(mine, whole / ranks + ranks) << "a rank holds more than its share of the stage";
  auto held = torch::tensor({mine}, torch::kLong);
  std::vector<torch::Tensor> one{held};
  shard_group->allreduce(one)->wait();
  EXPECT_EQ(held.item<int64_t>(), whole) << "the shard group's pieces do not cover the stage once";
}

// The loop a user writes: cut the model, prepare the stage, step it (under
// gradient accumulation, each step's rows in that many pipeline_steps of as
// many fewer micro-batches, inside accumulate()).
Trace through_accelerator(Accelerator& acc, PipelineScheduleKind schedule = PipelineScheduleKind::one_f_one_b) {
  const DeviceMesh* mesh = acc.device_mesh();
  EXPECT_NE(mesh, nullptr);
  const bool tp = mesh->config().tp_size > 1;
  seed_cpu(19);
  gpt2::GPT2 model(gpt2::named_config("tiny"));
  if (tp) gpt2::parallelize_tensor(model, mesh->group("tp"));
  auto stage = StageModule(*model, gpt2::pipeline_stage(model, mesh->group("pp")));
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
  expect_stage_sharded(prepared.core(), mesh->group("dp_shard"), accumulation);
  if (auto* model = dynamic_cast<fsdp::FullyShardedModel*>(prepared.core().sharding()))
    t.gathered = model->units().front()->compute_dtype();
  // The stage's parameters gathered from the shards (its tp slices under tp).
  for (const auto& [name, value] : prepared.core().sharding()->full_state()) {
    const auto [dim, packed] = accel::testing::gpt2_split_of(name);
    const bool split = tp && dim >= 0;
    t.params[name] = split ? accel::testing::reassemble(value, dim, packed, mesh->group("tp")) : value;
  }
  EXPECT_EQ(t.params.size(), stage->parameters().size());
  // get_state_dict gives the same: the stage's parameters whole (the
  // library's own gathers over dp_shard, then tp).
  const auto state = acc.get_state_dict(prepared);
  EXPECT_EQ(state.size(), t.params.size());
  for (const auto& [name, tensor] : state) {
    EXPECT_TRUE(t.params.count(name) && torch::equal(tensor, t.params.at(name))) << name;
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

AcceleratorOptions sharded(const ParallelismConfig& c, ShardingStrategy strategy = ShardingStrategy::full_shard) {
  return AcceleratorOptions().parallelism_config(c).sharding(ShardingOptions().strategy(strategy));
}

}  // namespace

TEST(PipelineFsdp, TwoStagesByTwoShardsEqualOneProcess) {
  run_distributed(4, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.dp_shard_size = 2;
    // GPipe too: its last stage runs every backward after every forward,
    // each from a loss that reads the tied projection freed by the backward before.
    for (const auto schedule : {PipelineScheduleKind::one_f_one_b, PipelineScheduleKind::gpipe}) {
      SCOPED_TRACE(to_string(schedule));
      Accelerator acc(sharded(c));
      EXPECT_EQ(acc.data_parallel_size(), 2);
      expect_matches(ref, through_accelerator(acc, schedule));
    }
  });
}

TEST(PipelineFsdp, GradientAccumulationEqualsOneProcess) {
  // gradient_accumulation_steps 2: the first pipeline_step of each step
  // keeps its full gradients, the second reduce-scatters the sums once,
  // after the tied copies' exchange.
  run_distributed(4, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.dp_shard_size = 2;
    Accelerator acc(sharded(c).gradient_accumulation_steps(2));
    expect_matches(ref, through_accelerator(acc));
  });
}

TEST(PipelineFsdp, HybridShardOnEightRanksEqualsOneProcess) {
  // Mesh order pp, dp_replicate, dp_shard: each stage's four ranks split it
  // in two and hold the two halves twice.
  run_distributed(8, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.dp_replicate_size = 2;
    c.dp_shard_size = 2;
    Accelerator acc(sharded(c, ShardingStrategy::hybrid_shard));
    EXPECT_EQ(acc.data_parallel_size(), 4);
    expect_matches(ref, through_accelerator(acc));
  });
}

TEST(PipelineFsdp, ThreeDimensionsOnEightRanksEqualOneProcess) {
  run_distributed(8, [] {
    const auto ref = single_process();
    auto c = pp2();
    c.dp_shard_size = 2;
    c.tp_size = 2;
    Accelerator acc(sharded(c));
    EXPECT_EQ(acc.data_parallel_size(), 2);
    expect_matches(ref, through_accelerator(acc));
  });
}

namespace {

// Each step's batch in two halves, the first pipeline_step inside no_sync:
// its gradients stay local (FSDP: whole), and the second one sums the tied
// copies of both halves' gradients once and reduces them. Equals one
// process running both halves' backwards before clipping.
void no_sync_across_steps(bool ddp) {
  run_distributed(4, [ddp] {
    seed_cpu(19);
    gpt2::GPT2 whole(gpt2::named_config("tiny"));
    auto ref_opt = adamw(whole->parameters());
    const auto rows = all_rows(whole->options().vocab_size());
    const int64_t half = kRowsPerStep / 2;
    Trace ref;
    for (int step = 0; step < kSteps; ++step) {
      ref_opt->zero_grad();
      double loss = 0;
      for (int h = 0; h < 2; ++h) {
        auto b = rows.narrow(0, step * kRowsPerStep + h * half, half);
        auto l = whole(b.narrow(1, 0, kSeq).contiguous(), b.narrow(1, 1, kSeq).contiguous());
        l.backward();
        loss += l.item<double>() / 2;
      }
      ref.norms.push_back(clip_grad_norm(whole->parameters(), kMaxNorm).item<double>());
      ref_opt->step();
      ref.losses.push_back(loss);
    }
    for (const auto& p : whole->named_parameters()) ref.params[p.key()] = p.value().detach().clone();

    auto c = pp2();
    c.dp_shard_size = 2;
    Accelerator acc(ddp ? AcceleratorOptions().parallelism_config(c) : sharded(c));
    const auto* mesh = acc.device_mesh();
    seed_cpu(19);
    gpt2::GPT2 model(gpt2::named_config("tiny"));
    auto stage = StageModule(*model, gpt2::pipeline_stage(model, mesh->group("pp")));
    auto [prepared, opt] = acc.prepare(stage, adamw(stage->parameters()));
    const int64_t per_replica = half / acc.data_parallel_size();
    Trace got;
    for (int step = 0; step < kSteps; ++step) {
      double loss = 0;
      for (int h = 0; h < 2; ++h) {
        auto b = rows.narrow(0, step * kRowsPerStep + h * half + acc.data_parallel_index() * per_replica, per_replica);
        auto run = [&] {
          return pipeline_step(acc, prepared, PipelineScheduleKind::one_f_one_b, kMicro,
                               b.narrow(1, 0, kSeq).contiguous(), b.narrow(1, 1, kSeq).contiguous());
        };
        torch::Tensor l;
        if (h == 0) {
          auto no_sync = prepared.no_sync();
          l = run();
        } else {
          l = run();
        }
        loss += acc.gather_for_metrics(l.reshape({1})).mean().item<double>() / 2;
      }
      got.norms.push_back(clip_pipeline_grad_norm_(acc, prepared, kMaxNorm).item<double>());
      opt->step();
      opt->zero_grad();
      got.losses.push_back(loss);
    }
    if (ddp) {
      for (const auto& p : prepared.module()->named_parameters()) got.params[p.key()] = p.value().detach().clone();
    } else {
      for (const auto& [name, value] : prepared.core().sharding()->full_state()) got.params[name] = value;
    }
    expect_matches(ref, got);
  });
}

}  // namespace

TEST(PipelineNoSync, FullShardReducesOnceAfterTheTiedSum) { no_sync_across_steps(/*ddp=*/false); }

// The same path under DDP: the tied copies are summed only when the
// gradients are reduced, not also inside no_sync (which would count the
// first half's tied gradients twice).
TEST(PipelineNoSync, DdpSumsTheTiedCopiesOnce) { no_sync_across_steps(/*ddp=*/true); }

TEST(PipelineFsdp, BFloat16GathersTheStageInBFloat16) {
  // Under mixed_precision bf16 the stage is gathered in bf16 (param_dtype
  // from mixed_precision, as Accelerate's FSDP plugin sets it) and its
  // shards stay fp32. The losses and norms stay close to one process's
  // bf16 run; the parameters are not compared: Adam turns bf16 gradient
  // noise on near-zero elements into whole-step differences.
  run_distributed(4, [] {
    const auto ref = single_process(MixedPrecision::bf16);
    auto c = pp2();
    c.dp_shard_size = 2;
    Accelerator acc(sharded(c).mixed_precision("bf16"));
    const auto got = through_accelerator(acc);
    ASSERT_EQ(got.losses.size(), ref.losses.size());
    for (size_t s = 0; s < ref.losses.size(); ++s) {
      EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-3) << "loss at step " << s;
      EXPECT_NEAR(got.norms[s], ref.norms[s], 1e-2 * ref.norms[s]) << "gradient norm at step " << s;
    }
    EXPECT_EQ(got.gathered, torch::kBFloat16);
    for (const auto& [name, value] : got.params) EXPECT_EQ(value.scalar_type(), torch::kFloat) << name;
  });
}

TEST(PipelineFsdp, RefusesWhatActsOnUnitsInsideAStage) {
  // A stage shards as one unit: a wrap policy naming the blocks, or their
  // recomputation, would silently do nothing.
  run_distributed(2, [] {
    accel::testing::expect_error(
        [&] {
          Accelerator acc(AcceleratorOptions().parallelism_config(pp2()).sharding(
              ShardingOptions().strategy(ShardingStrategy::full_shard).transformer_cls_to_wrap({"GPT2Block"})));
        },
        {"pp_size is 2", "transformer_cls_to_wrap 'GPT2Block'", "one unit"});
    accel::testing::expect_error(
        [&] {
          Accelerator acc(AcceleratorOptions().parallelism_config(pp2()).sharding(
              ShardingOptions().strategy(ShardingStrategy::hybrid_shard).activation_checkpointing(true)));
        },
        {"pp_size is 2", "activation_checkpointing", "one unit"});
  });
}
