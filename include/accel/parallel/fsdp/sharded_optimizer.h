#pragma once
// ShardedOptimizerTensors: what a prepared optimizer steps under full_shard.
// Each of its parameters is replaced, in its own param group and place,
// by that parameter's piece in this rank's shard (ShardedUnit::piece), so
// groups, per-group options and weight-decay exclusions made before
// prepare keep their meaning; any element-wise optimizer then steps the
// pieces exactly as it would step the whole. The steps write the shards in
// place, and the next forward gathers them: nothing to copy back.
//
// Offloaded shards (ShardPlacement::host_masters) are stepped in host
// memory: Adam and AdamW (and subclasses) by CPU Adam on the optimizer's own
// state, writing the parameters' bf16/fp16 copy in the same pass, on a
// thread of its own unit by unit while the next forward runs (each unit's
// gather waits for its part); any other optimizer by its own step() on the
// CPU, the copy refreshed after. With offload_optimizer device nvme, the
// Adam/AdamW state lives in files on the drive (paged_adam_state.h).
#include <future>
#include <memory>
#include <optional>
#include <vector>

#include <torch/optim/optimizer.h>

#include "accel/optim/optimizer_tensors.h"
#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "accel/util/export.h"

namespace accel::fsdp {

class PagedAdamState;  // paged_adam_state.h

class ACCEL_API ShardedOptimizerTensors : public OptimizerTensors {
 public:
  /// Takes over `optimizer` (not stepped yet, element-wise; else
  /// std::invalid_argument), whose parameters must all belong to `models`.
  ShardedOptimizerTensors(torch::optim::Optimizer& optimizer, std::vector<std::shared_ptr<FullyShardedModel>> models);

  ~ShardedOptimizerTensors() override;

  void gradients_to_optimizer() override;
  bool step_optimizer(torch::optim::Optimizer& optimizer) override;
  void parameters_to_model() override;
  void zero_model_grads(bool set_to_none) override;
  /// Waits for the update of the last step (it runs in the background,
  /// overlapping the next forward: step_optimizer).
  void finish_pending() override;
  void collect_gradients(const std::vector<torch::Tensor>& params, std::vector<bool>& claimed,
                         GradientSet& out) const override;

  /// Where the optimizer's parameters come from, in its numbering (param
  /// groups in order, then within each): the unit, the parameter's index
  /// there, and the index of its model among those given at construction.
  struct Place {
    ShardedUnit* unit;
    size_t index;
    size_t model = 0;
  };
  const std::vector<Place>& places() const { return places_; }

 private:
  Place place_of(const torch::Tensor& param) const;

  std::vector<std::shared_ptr<FullyShardedModel>> models_;
  std::vector<ShardedUnit*> units_;  // those holding this optimizer's parameters
  std::vector<Place> places_;        // per optimizer parameter
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  bool offloaded_ = false;                 // some unit's shards are in host memory
  bool copies_written_ = false;            // the last step wrote the offloaded copies itself
  std::optional<torch::Device> device_;    // of the parameters, when CUDA
  std::future<void> update_;               // the offloaded update still running
  std::shared_ptr<PagedAdamState> paged_;  // offload_optimizer nvme: the state's files
  void wait_for_device() const;
};

}  // namespace accel::fsdp
