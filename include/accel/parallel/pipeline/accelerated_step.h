#pragma once
// Pipeline parallelism driven by the Accelerator: with
// parallelism_config.pp_size > 1 every rank prepares its stage
// (pipeline/stage_module.h) and the stage's optimizer like any model; the
// Accelerator replicates the stage over the mesh's data-parallel ranks
// (DDP, or ZeRO-1/2: shard_optimizer, shard_grad_op), which hold the same
// part of the model, as it does for tensor-parallel slices, or shards it
// over them (FSDP: full_shard over dp_shard, hybrid_shard replicated over
// dp_replicate; the stage is one unit). A step is:
//
//   accel::Accelerator acc(accel::AcceleratorOptions().parallelism_config(config));  // pp_size 2, ...
//   gpt2::GPT2 model(gpt2::named_config("tiny"));                     // same seed on every rank
//   auto stage = accel::StageModule(*model, gpt2::pipeline_stage(model, acc.device_mesh()->group("pp")));
//   auto [prepared, optimizer, loader] = acc.prepare(stage, make_optimizer(stage->parameters()), loader);
//   for (auto& batch : loader) {                                      // this replica's batch
//     auto loss = accel::pipeline_step(acc, prepared, accel::PipelineScheduleKind::one_f_one_b, 4,
//                                      batch["tokens"], batch["targets"]);
//     accel::clip_pipeline_grad_norm_(acc, prepared, 1.0);   // under accumulation: if (acc.sync_gradients())
//     optimizer->step();
//     optimizer->zero_grad();
//   }
//
// The micro-batches' backwards are the gradient accumulation of one step:
// under DDP the first ones accumulate locally (no_sync) and the last one
// all-reduces the sums, once per step (torch.distributed.pipelining's
// backward_maybe_with_nosync); ZeRO-1 reduces once at the optimizer step;
// ZeRO-2 reduces in every backward, as DeepSpeed does under accumulation;
// FSDP keeps every backward's full gradients (no_sync) and reduce-scatters
// their sums once, after the step's last backward and the tied copies'
// exchange (the stage is gathered once for the step's micro-batches and
// freed by its last backward, as torch.distributed.pipelining runs FSDP).
// Each micro-batch runs through the prepared stage, so mixed precision
// (bf16 autocast) applies as to any prepared model.
#include <cstdint>

#include <torch/types.h>

#include "accel/accelerator.h"
#include "accel/parallel/pipeline/schedule.h"
#include "accel/parallel/pipeline/stage_module.h"
#include "accel/util/export.h"

namespace accel {

/// One training step of this rank's prepared stage: `inputs` (the first
/// stage) and `targets` (the last) are this data-parallel replica's batch,
/// cut into `microbatches` equal micro-batches (the other stages may pass
/// undefined tensors), run by `schedule`. After it every gradient of the
/// stage is that of the replica's mean loss averaged over the data-parallel
/// ranks, i.e. of the whole batch's mean loss, the two copies of a tied
/// parameter summed. Returns the replica's mean loss (0-dim float64, on
/// every stage). Zero the gradients before it, as before any backward.
/// Under fp16 the last stage's losses are scaled by the Accelerator's
/// GradScaler for backward; the optimizers unscale (clip_pipeline_grad_norm_
/// first, when it runs), and an inf/nan on any rank skips the step on all.
/// Throws std::invalid_argument naming the value for a model that is no
/// prepared StageModule of this Accelerator, and what run_pipeline refuses
/// (split_microbatches: a batch that does not divide); std::logic_error
/// for a second step into tied gradients that already hold the stages' sum
/// (no zero_grad since, outside an accumulation).
///
/// Under gradient_accumulation_steps > 1, inside accelerator.accumulate
/// (prepared) as any backward: each run's gradients count 1/steps; only the
/// batch that completes the accumulation reduces over the data-parallel
/// ranks and sums the tied copies (ZeRO-2 still reduces in every backward).
ACCEL_API torch::Tensor pipeline_step(Accelerator& accelerator, PreparedModel<StageModule>& stage,
                                      PipelineScheduleKind schedule, int64_t microbatches, const torch::Tensor& inputs,
                                      const torch::Tensor& targets);

/// Clips the stage's gradients by the norm of the whole model's, as one
/// process clipping every parameter would: tensor-parallel slices summed
/// over the tp ranks, ZeRO's pieces over the data-parallel ranks, the
/// stages' sums over the pipeline, and a tied parameter counted once.
/// Returns the norm before clipping (0-dim float, equal on every rank).
/// Every rank calls it after pipeline_step.
ACCEL_API torch::Tensor clip_pipeline_grad_norm_(Accelerator& accelerator, PreparedModel<StageModule>& stage,
                                                 double max_norm, double norm_type = 2.0);

}  // namespace accel
