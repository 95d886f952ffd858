#pragma once
// PipelineStage: one rank's slice of a model cut into pipeline stages (a
// contiguous run of its units; the first stage also holds what comes
// before the first unit, the last what comes after the last one, and the
// loss), described by what the runner (pipeline/runner.h) needs to train it:
//
//   accel::PipelineStage stage(mesh.group("pp"));        // index = rank in the pp group
//   stage.forward = [&](const torch::Tensor& x) { ... }; // one micro-batch through this slice
//   stage.loss = [&](const torch::Tensor& out, const torch::Tensor& target) { ... };  // last stage
//   stage.parameters = ...;                              // what this stage's optimizer steps
//
// A model author writes the cut once for a model (the GPT-2 example's is
// examples/gpt2/pipeline_parallel.h); cut_units (pipeline/stage_cut.h)
// decides which units each stage runs.
//
// Tied parameters: a weight used on two stages (GPT-2's token embedding is
// also its output projection, on the first and the last stage) is held by
// both, each with its own copy; after backward sum_tied_gradients gives
// both copies the sum of the two stages' gradients (Megatron-LM's
// embedding group), so equal copies stay equal under any optimizer. The
// copy on the later stage is left out of the gradient norm (counted once).
#include <functional>
#include <vector>

#include <torch/types.h>

#include "accel/dist/collectives.h"
#include "accel/optim/optimizer_tensors.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API PipelineStage {
  /// Stage index = this rank's rank in `group`, stage count = its size.
  /// Throws std::invalid_argument for a null group.
  explicit PipelineStage(ProcessGroupPtr group);

  bool is_first() const { return index == 0; }
  bool is_last() const { return index == num_stages - 1; }

  ProcessGroupPtr group;
  int index = 0;
  int num_stages = 1;
  /// Where received activations and gradients are placed.
  torch::Device device = torch::kCPU;

  /// One micro-batch through this stage: the first stage gets the
  /// micro-batch's input, every other stage the previous stage's output
  /// (the same shape and dtype as it was sent). Each stage but the last
  /// returns one tensor, which is sent on to the next stage.
  std::function<torch::Tensor(const torch::Tensor& input)> forward;
  /// Last stage: the micro-batch's loss (a scalar, the mean over its
  /// items) from the stage's output and the micro-batch's target.
  std::function<torch::Tensor(const torch::Tensor& output, const torch::Tensor& target)> loss;
  /// Optional: called before each micro-batch's backward with the tensor
  /// backward starts from (the scaled loss on the last stage, the sent
  /// output elsewhere) and whether it is the step's last backward on this
  /// stage. Data parallelism reduces the accumulated gradients once, in
  /// that last backward (pipeline/accelerated_step.h arms DDP's reducer
  /// there, as torch.distributed.pipelining does).
  std::function<void(const torch::Tensor& output, bool last)> before_backward;
  /// Each micro-batch's loss is divided by (micro-batches x this) for its
  /// backward (the returned loss is not): the number of pipeline runs a
  /// gradient accumulation sums (pipeline_step sets it to
  /// gradient_accumulation_steps).
  double loss_divisor = 1.0;
  /// Last stage: each micro-batch's loss is multiplied by this 0-dim tensor
  /// for its backward (fp16 loss scaling: GradScaler's scale; the returned
  /// loss is not scaled). Undefined: 1.
  torch::Tensor loss_scale;

  /// Every parameter this stage trains (what its optimizer takes), tied
  /// copies included.
  std::vector<torch::Tensor> parameters;
  /// Those of `parameters` that stage `tied_stage` holds a copy of, in the
  /// same order there.
  std::vector<torch::Tensor> tied;
  int tied_stage = -1;

  /// Written by sum_tied_gradients: each tied gradient it wrote and that
  /// tensor's version then (see tied_gradients_hold_a_sum).
  std::vector<std::pair<c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>, uint32_t>> summed_tied;
};

/// Sums the gradients of `stage.tied` with those of the copies on
/// stage.tied_stage, by a send and a receive on the pipeline group: both
/// stages call it after backward (an absent gradient counts as zero).
/// Nothing to do when stage.tied is empty. The sum is exact to the bit on
/// both (a + b == b + a), so copies stepped alike stay identical.
ACCEL_API void sum_tied_gradients(PipelineStage& stage);

/// Whether the tied copies' gradients still hold the sum sum_tied_gradients
/// last wrote, untouched since (no zero_grad). More backward into them and
/// another sum would add the other stage's part twice: a step accumulating
/// over several pipeline runs sums once, after the last.
ACCEL_API bool tied_gradients_hold_a_sum(const PipelineStage& stage);

/// The gradients of the stage's parameters for clipping, as
/// clip_grad_norm_across_stages (pipeline/clip.h) counts them: a slice
/// made by tensor parallelism as sharded over its tp group (as
/// tensor_parallel_gradients does), everything else replicated, and a tied
/// copy only on the earlier of its two stages (on the later one it is in
/// `uncounted`: scaled, not counted).
struct ACCEL_API StageGradients {
  GradientSet counted;
  std::vector<torch::Tensor> uncounted;
};
ACCEL_API StageGradients stage_gradients(const PipelineStage& stage);

}  // namespace accel
