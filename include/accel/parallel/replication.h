#pragma once
// Replication: how the Accelerator replicates prepared models and what
// their optimizers update, one object per mode, chosen once from the
// options (make_replication):
//   one process        the model as it is; fp32 masters under master_weights
//   DDP                DataParallelEngine around each model (parallel/ddp.h)
//   ZeRO (sharding)    no DDP; a ZeroEngine per (model, optimizer) pair
//                      (parallel/zero/zero_engine.h)
//   full_shard         each model's parameters sharded at its units
//                      (parallel/fsdp/fsdp_replication.h)
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "accel/accelerator_options.h"
#include "accel/optim/optimizer_tensors.h"
#include "accel/parallel/ddp.h"
#include "accel/parallel/model_sharding.h"
#include "accel/util/export.h"

namespace accel {

class AcceleratedOptimizer;
class OptimizerCheckpoint;
class PreparedModelCore;
class ProcessState;

/// What runs around a prepared model's forward; either may be null.
struct ACCEL_API ModelReplica {
  std::unique_ptr<DataParallelEngine> ddp;
  std::shared_ptr<ModelSharding> sharding;
};

class ACCEL_API Replication {
 public:
  virtual ~Replication() = default;
  /// For a model already on its device (and cast): what runs around its forward.
  virtual ModelReplica prepare_model(const std::shared_ptr<torch::nn::Module>& module) = 0;
  /// Whether prepare_model gives parameters and buffers on the meta device
  /// their values (from the main process); other modes refuse them.
  virtual bool fills_meta_tensors() const { return false; }
  /// What `optimizer` updates in place of the model's parameters (null:
  /// the parameters themselves). `models`: those prepared so far.
  virtual std::shared_ptr<OptimizerTensors> prepare_optimizer(
      torch::optim::Optimizer& optimizer, const std::vector<std::shared_ptr<PreparedModelCore>>& models) = 0;
  /// How a prepared optimizer's state goes into save_state's folder and
  /// back (src/accel/checkpoint/optimizer_checkpoint.h): by default its
  /// full state, from the main process.
  virtual std::unique_ptr<OptimizerCheckpoint> optimizer_checkpoint(AcceleratedOptimizer& optimizer) const;
};

/// ZeRO when `sharding` is set and the process is distributed, else DDP
/// (distributed) or nothing. `master_weights`: the model is kept in the
/// mixed-precision dtype and stepped through fp32 masters.
ACCEL_API std::shared_ptr<Replication> make_replication(const ProcessState& state,
                                                        const std::optional<ShardingOptions>& sharding,
                                                        const DDPOptions& ddp, bool master_weights);
/// DDP over `group` alone (nothing when null): the data-parallel ranks of
/// a mesh whose other dimensions split the model (tensor parallel), each
/// rank replicating its own slice with the ranks that hold the same one.
ACCEL_API std::shared_ptr<Replication> make_data_parallel_replication(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                                                      const DDPOptions& ddp, bool master_weights);

}  // namespace accel
