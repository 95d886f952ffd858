#pragma once
// ZeRO-1 and NO_SHARD gradients: each parameter's .grad is a view into a
// flat gradient buffer per param group (the layout of the parameters), so
// backward and gradient accumulation write full gradients there with no
// communication. At the optimizer step one collective per group reduces
// them: a reduce-scatter into this rank's slice (ZeRO-1), or an all-reduce
// that leaves every rank the whole averaged gradient (NO_SHARD, = DDP,
// whose parameters' .grad then hold the averages as DDP's do). Where the
// slice has the gradients' dtype and device (an fp32 model, no offload) it
// is a view of the flat gradient: the rank's range then holds the averaged
// gradient after the step, and the slices cost no memory of their own.
#include <memory>

#include "accel/parallel/zero/gradient_reducer.h"
#include "accel/util/export.h"

namespace accel::zero {

class ACCEL_API FullGradientReducer : public GradientReducer {
 public:
  /// `scatter`: reduce-scatter into the slices (ZeRO-1), else all-reduce (NO_SHARD).
  FullGradientReducer(std::shared_ptr<ReductionTarget> target, bool scatter);

  void finish() override;
  void zero_grad() override;
  int64_t held_bytes() const override;
  bool slices_are_views() const override;

 private:
  // Points every parameter's .grad at its view again (after a user's
  // zero_grad(set_to_none) or a fresh .grad), keeping the values.
  void attach();

  std::shared_ptr<ReductionTarget> target_;
  bool scatter_;
  std::vector<torch::Tensor> flat_grads_;
  std::vector<bool> views_;  // per group: the slice is a view of the flat gradient
};

}  // namespace accel::zero
