#pragma once
// The ZeRO mode of the Accelerator (parallel/replication.h): prepared models
// are not wrapped in DDP (rank 0's weights are broadcast once), and each
// prepared optimizer gets a ZeroEngine over the prepared model that holds
// its parameters (so the model is prepared with or before its optimizer,
// as Accelerate requires with DeepSpeed).
#include "accel/parallel/replication.h"
#include "accel/util/export.h"

namespace accel::zero {

class ACCEL_API ZeroReplication : public Replication {
 public:
  ZeroReplication(c10::intrusive_ptr<c10d::ProcessGroup> group, ShardingOptions options);

  ModelReplica prepare_model(const std::shared_ptr<torch::nn::Module>& module) override;
  std::shared_ptr<OptimizerTensors> prepare_optimizer(
      torch::optim::Optimizer& optimizer, const std::vector<std::shared_ptr<PreparedModelCore>>& models) override;
  /// ZeRO's shards (and consolidated state) for the optimizers it prepared.
  std::unique_ptr<OptimizerCheckpoint> optimizer_checkpoint(AcceleratedOptimizer& optimizer) const override;
  const ShardingOptions& options() const { return options_; }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  ShardingOptions options_;
  std::vector<const torch::nn::Module*> bound_;  // models that already have their engine
};

}  // namespace accel::zero
