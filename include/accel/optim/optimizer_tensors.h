#pragma once
// OptimizerTensors: what a prepared optimizer updates when it is not the
// model's parameters themselves: fp32 master copies (amp/master_weights.h)
// or ZeRO's flat per-rank slices (parallel/zero/zero_engine.h). The
// AcceleratedOptimizer drives it, once per optimizer step:
//   gradients_to_optimizer()   the gradients the optimizer will use become final
//                              (copied to the masters / reduced into the slices)
//   (loss-scale unscaling, clipping, the optimizer's own step)
//   parameters_to_model()      the updated values go back into the model
//                              (rounded / all-gathered), unless the step was skipped
//   zero_model_grads()         with the optimizer's zero_grad
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <functional>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <vector>

#include "accel/util/export.h"

namespace accel {

/// The gradients standing for some model parameters, as this rank holds
/// them: `replicated` ones are equal on every rank, `sharded` ones are this
/// rank's disjoint part of gradients split across `group` (norms of those
/// are summed over the ranks).
struct ACCEL_API GradientSet {
  std::vector<torch::Tensor> replicated;
  std::vector<torch::Tensor> sharded;
  c10::intrusive_ptr<c10d::ProcessGroup> group;

  /// Gradients whose squared 2-norm is known already (summed on the device
  /// before they went to host memory) and whose scaling their holder can
  /// fold into the optimizer step: 2-norm clipping uses `sq_norm` and calls
  /// `scale_later(factor)` instead of reading and writing `tensors`; every
  /// other use takes `tensors` as plain gradients (sharded or replicated).
  struct Summary {
    std::vector<torch::Tensor> tensors;
    torch::Tensor sq_norm;
    std::function<void(float factor)> scale_later;
    bool sharded = false;
  };
  std::vector<Summary> summarized;
  /// Moves the summarized tensors into `replicated` / `sharded`.
  void expand_summaries();
};

class ACCEL_API OptimizerTensors {
 public:
  virtual ~OptimizerTensors() = default;

  virtual void gradients_to_optimizer() = 0;
  virtual void parameters_to_model() = 0;
  virtual void zero_model_grads(bool set_to_none) = 0;

  /// Adds to `out` the gradients the optimizer uses for those of `params`
  /// it stands for, and sets `claimed[i]` for each such params[i]. Call
  /// after gradients_to_optimizer().
  virtual void collect_gradients(const std::vector<torch::Tensor>& params, std::vector<bool>& claimed,
                                 GradientSet& out) const = 0;
  /// Runs the optimizer's update itself (ZeRO-Offload: Adam/AdamW on the
  /// CPU, parallel/zero/offloaded_update.h) and returns true; false: the
  /// caller calls optimizer.step().
  virtual bool step_optimizer(torch::optim::Optimizer& /*optimizer*/) { return false; }
  /// Brings an update still running in the background (a delayed one) into
  /// the model and waits for it. Before reading the model or saving.
  virtual void finish_pending() {}
  /// Milliseconds the last update took on the host when step_optimizer()
  /// ran it there (ZeRO-Offload); 0 when the optimizer stepped itself.
  virtual double last_update_ms() const { return 0.0; }
};

}  // namespace accel
