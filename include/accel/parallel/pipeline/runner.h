#pragma once
// Runs one training step of a pipeline stage (pipeline/stage.h) by a
// schedule's action list (pipeline/schedule.h), every stage of the pipeline
// group at once, with point-to-point sends and receives between
// neighbouring stages:
//
//   forward m   first stage: stage.forward(inputs[m]); others: receive the
//               previous stage's output (a small header first carries its
//               dtype and shape, so no shape is agreed beforehand), run
//               stage.forward on it; every stage but the last sends its
//               output on. The last stage computes stage.loss(output,
//               targets[m]) and keeps loss / microbatches for backward.
//   backward m  last stage: backward from that scaled loss; others: receive
//               the gradient of the output they sent, backward from it.
//               Every stage but the first sends its input's gradient back.
//
// Gradients accumulate in the parameters' .grad over the micro-batches, so
// after the step they are those of the mean loss over the whole batch
// (equal micro-batches of a mean loss give the batch's mean). Zero them
// before the step, as for any backward. Sends are asynchronous (waited for
// at the end of the step) and receives block, so the two neighbours of a
// 1F1B steady state, each sending before it receives, cannot deadlock.
//
//   std::vector<torch::Tensor> inputs, targets;       // what this stage uses
//   if (stage.is_first()) inputs = accel::split_microbatches(tokens, 4);
//   if (stage.is_last()) targets = accel::split_microbatches(next_tokens, 4);
//   optimizer.zero_grad();
//   auto loss = accel::run_pipeline(stage, accel::PipelineScheduleKind::one_f_one_b, 4, inputs, targets);
//   accel::sum_tied_gradients(stage);
//   auto grads = accel::stage_gradients(stage);
//   accel::clip_grad_norm_across_stages(grads, mesh.group("pp"), 1.0);
//   optimizer.step();
#include <vector>

#include <torch/types.h>

#include "accel/parallel/pipeline/schedule.h"
#include "accel/parallel/pipeline/stage.h"
#include "accel/util/export.h"

namespace accel {

/// Runs `actions` (each micro-batch's forward once, before its backward
/// once) on `stage`. `inputs`: one per micro-batch on the first stage,
/// ignored elsewhere; `targets`: one per micro-batch on the last stage,
/// ignored elsewhere. Returns the mean of the micro-batches' losses, a
/// 0-dim float64 tensor on every stage (broadcast from the last). Throws
/// std::invalid_argument naming the counts when the inputs or targets do
/// not match the actions' micro-batches, or an action list that runs a
/// micro-batch twice, backward before forward, or not at all; a stage
/// without forward (or, on the last stage, loss).
ACCEL_API torch::Tensor run_pipeline(PipelineStage& stage, const std::vector<PipelineAction>& actions,
                                     const std::vector<torch::Tensor>& inputs,
                                     const std::vector<torch::Tensor>& targets);

/// The same with the schedule `kind` over `microbatches` micro-batches.
ACCEL_API torch::Tensor run_pipeline(PipelineStage& stage, PipelineScheduleKind kind, int64_t microbatches,
                                     const std::vector<torch::Tensor>& inputs,
                                     const std::vector<torch::Tensor>& targets);

/// `batch` cut along dim 0 into `microbatches` equal parts. Throws
/// std::invalid_argument naming both sizes when they do not divide.
ACCEL_API std::vector<torch::Tensor> split_microbatches(const torch::Tensor& batch, int64_t microbatches);

}  // namespace accel
