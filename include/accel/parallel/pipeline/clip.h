#pragma once
// Gradient clipping by the norm of the whole model's gradients when the
// model is cut into pipeline stages (and each stage perhaps split by tensor
// parallelism): every stage sums |g|^p over the gradients it counts
// (stage_gradients, pipeline/stage.h: tp slices summed over the tp group,
// replicated ones and tied copies once), the stages' sums are all-reduced
// over the pipeline group, and every gradient is scaled by the same
// min(1, max_norm / (norm + 1e-6)), as one process clipping the whole
// model would. Data-parallel replicas hold equal (already averaged)
// gradients, so nothing is reduced over the data-parallel group.
#include "accel/dist/collectives.h"
#include "accel/optim/grad_norm.h"
#include "accel/parallel/pipeline/stage.h"
#include "accel/util/export.h"

namespace accel {

/// Clips `grads` in place and returns the total norm before clipping (a
/// 0-dim float tensor, equal on every rank). Every rank of `pp_group` (and
/// of grads.counted.group where it holds tp slices) must call it. norm_type
/// may be infinity (the largest element: max-reduced instead of summed).
/// Throws std::invalid_argument for a negative max_norm or a norm_type <= 0.
ACCEL_API torch::Tensor clip_grad_norm_across_stages(StageGradients& grads, const ProcessGroupPtr& pp_group,
                                                     double max_norm, double norm_type = 2.0);

/// The same over gradients as the Accelerator's optimizers hold them
/// (optim/grad_norm.h's parts: ZeRO's pieces summed over their group, tp
/// slices over split_over), the stage's sum then over `pp_group`.
/// `uncounted` (a tied copy counted on another stage) is scaled only.
ACCEL_API torch::Tensor clip_grad_norm_across_stages(std::vector<GradientPart>& parts, GradientSet& uncounted,
                                                     const ProcessGroupPtr& pp_group, double max_norm,
                                                     double norm_type = 2.0);

}  // namespace accel
