#pragma once
// ZeroEngine: ZeRO-1 / ZeRO-2 / NO_SHARD data parallelism for one model and
// its optimizer (DeepSpeed's ZeRO stages 0-2, FSDP's NO_SHARD and
// SHARD_GRAD_OP). Every rank keeps the whole model; the N ranks split:
//   - the optimizer state and fp32 master weights (ZeRO-1 and -2): each rank
//     keeps them for its 1/N slice of every param group only;
//   - the gradients (ZeRO-2): reduced in buckets during backward so that each
//     rank keeps only its slice (parallel/zero/bucketed_gradient_reducer.h).
//
// How: the parameters of each param group move into one flat buffer
// (parallel/zero/flat_parameters.h, layout in flat_layout.h). The user's
// optimizer is kept, but each of its param groups now holds one tensor: this
// rank's fp32 slice of the group's buffer (a view into it when the model is
// fp32, else an fp32 master copy), whose .grad is the averaged gradient
// slice. Any element-wise optimizer (zero/element_wise.h) then steps the
// slice exactly as it would step the whole. After the step the updated
// slices are all-gathered into the flat buffers, i.e. into the model.
//
// Optimizer offload (ShardingOptions::offload_optimizer): the masters, the
// gradient slices and the state live in host memory (state on NVMe under
// nvme); Adam/AdamW then step on the CPU (parallel/zero/offloaded_update.h),
// other element-wise optimizers (cpu only) with their own step() on the
// host slices.
//
// With the delayed update (OffloadOptions::delayed_update) each step's
// gradient slices go to the background update and the next backward writes
// a second set, so gradients never carry over from one step to the next (as
// if zero_grad() had been called at every step).
//
// One process (a null process group) is allowed: nothing is split, but the
// offload works as with several (ZeRO-Offload on one GPU).
//
// The AcceleratedOptimizer drives it (optim/optimizer_tensors.h); prepare a
// model and its optimizer with AcceleratorOptions::sharding set.
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <vector>

#include "accel/checkpoint/optimizer_state.h"
#include "accel/optim/optimizer_tensors.h"
#include "accel/parallel/sharding_options.h"
#include "accel/parallel/zero/flat_layout.h"
#include "accel/parallel/zero/flat_parameters.h"
#include "accel/parallel/zero/gradient_reducer.h"
#include "accel/parallel/zero/offloaded_update.h"
#include "accel/util/export.h"

namespace accel::zero {

/// Bytes this rank holds for the optimizer (ZeroEngine::memory()).
struct ACCEL_API ZeroMemory {
  int64_t optimizer_state = 0;  // the optimizer's state tensors (its slices)
  int64_t master_weights = 0;   // fp32 master slices that are copies (0 when views of the model)
  int64_t gradient_slices = 0;  // the averaged fp32 gradient slices
  int64_t full_gradients = 0;   // full-size gradients kept between steps (ZeRO-1, NO_SHARD)
  int64_t peak_buckets = 0;     // most bytes of ZeRO-2 bucket buffers alive at once
};

class ACCEL_API ZeroEngine : public OptimizerTensors {
 public:
  /// Takes over `optimizer` (not stepped yet; element-wise, else
  /// std::invalid_argument naming it), whose parameters must all be
  /// parameters of `module` (named by module.named_parameters()). `group`
  /// null: one process.
  ZeroEngine(std::shared_ptr<torch::nn::Module> module, torch::optim::Optimizer& optimizer,
             c10::intrusive_ptr<c10d::ProcessGroup> group, const ShardingOptions& options);
  ~ZeroEngine() override;

  // OptimizerTensors: reduce into the slices / all-gather into the model.
  void gradients_to_optimizer() override;
  void parameters_to_model() override;
  void zero_model_grads(bool set_to_none) override;
  void collect_gradients(const std::vector<torch::Tensor>& params, std::vector<bool>& claimed,
                         GradientSet& out) const override;
  bool step_optimizer(torch::optim::Optimizer& optimizer) override;
  void finish_pending() override;

  /// The optimizer's state over the slices (checkpoint/optimizer_state.h),
  /// including an offloaded Adam's, which the engine holds, not the
  /// optimizer object (given as LibTorch's Adam/AdamW would hold it).
  OptimizerStateFiles optimizer_state_files() const;
  /// After loading a state into optimizer(): an offloaded Adam takes it over
  /// (and the optimizer object is cleared). No offload: nothing.
  void state_from_optimizer();
  /// Milliseconds the last offloaded update took on the host (0 without).
  double last_update_ms() const override;

  const FlatLayout& layout() const { return layout_; }
  const ShardingOptions& options() const { return options_; }
  const c10::intrusive_ptr<c10d::ProcessGroup>& process_group() const { return group_; }
  int rank() const { return group_ ? group_->getRank() : 0; }
  int world_size() const { return group_ ? group_->getSize() : 1; }
  torch::optim::Optimizer& optimizer() const { return optimizer_; }
  const torch::nn::Module& module() const { return *module_; }
  /// The optimizer's tensor for group g: this rank's slice of the parameters.
  const torch::Tensor& master(size_t g) const { return masters_.at(g); }
  /// Whether the masters are views of the model's own storage (fp32 model, no offload).
  bool masters_are_views() const { return masters_are_views_; }
  /// The flat range of group g this rank steps (the whole group under NO_SHARD).
  FlatRange owned(size_t g) const { return target_->owned.at(g); }
  const FlatParameters& flat_parameters() const { return *flat_; }
  ZeroMemory memory() const;

 private:
  std::shared_ptr<torch::nn::Module> module_;
  torch::optim::Optimizer& optimizer_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  ShardingOptions options_;
  FlatLayout layout_;
  std::unique_ptr<FlatParameters> flat_;
  std::vector<torch::Tensor> masters_;
  bool masters_are_views_ = true;
  std::shared_ptr<ReductionTarget> target_;
  std::unique_ptr<GradientReducer> reducer_;
  std::unique_ptr<OffloadedUpdate> update_;  // offloaded Adam/AdamW
  std::vector<torch::Tensor> spare_slices_;  // delayed update: the slices it is reading
  bool unpublished_ = false;                 // delayed update: not yet in the model

  void publish();
  void state_to_optimizer() const;
};

}  // namespace accel::zero
