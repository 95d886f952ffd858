#pragma once
// The full_shard and hybrid_shard modes of the Accelerator (parallel/replication.h): each
// prepared model becomes a FullyShardedModel (rank 0's weights broadcast
// first), and each prepared optimizer steps the pieces of the shards of
// the models prepared before it (sharded_optimizer.h).
//
// The processes other than the main one may build the model on the meta
// device (big_model/empty_init.h: no memory), as FSDP's
// sync_module_states with cpu_ram_efficient_loading: their buffers are
// made and broadcast, and their parameters get their values unit by unit
// from the main process (FromMainProcess), so that they never hold the
// whole model. The main process must hold the weights.
//
// save_state writes the model whole (gathered one unit at a time, by the
// main process, as FSDP's FULL_STATE_DICT) or, under SHARDED_STATE_DICT,
// as each rank's slices (FullyShardedModel::save_slices); and each rank's
// optimizer state over its pieces as slice files
// (sharded_optimizer_checkpoint.h). Either loads on any number of processes.
#include <memory>
#include <vector>

#include "accel/parallel/fsdp/fully_sharded_model.h"
#include "accel/parallel/replication.h"
#include "accel/util/export.h"

namespace accel {
class DeviceMesh;
}  // namespace accel

namespace accel::fsdp {

class ACCEL_API FullyShardedReplication : public Replication {
 public:
  /// full_shard: the parameters split across every rank of `state`.
  /// hybrid_shard: across groups of hybrid_shard_size consecutive ranks
  /// (created here: every rank must construct it), replicated across the
  /// groups; std::invalid_argument when that size does not divide the world.
  /// reshard_after_forward as an int k: groups of k consecutive ranks of
  /// each shard group are made here too (std::invalid_argument when k does
  /// not divide the shard group's size).
  FullyShardedReplication(const ProcessState& state, ShardingOptions options);
  /// On a device mesh whose other dimensions split the model (tensor
  /// parallel), as FSDP2 composes with TP (TorchTitan): each rank's own
  /// parameters, tp slices and replicated ones alike, split across the
  /// mesh's dp_shard ranks and replicated across its dp_replicate ranks
  /// (HSDP); the weights come from the first rank of the data-parallel
  /// ranks ("dp"), which hold the same slices. With context parallel the
  /// cp ranks join both: shards over dp_shard x cp ("dp_shard_cp"), weights
  /// from the first of "dp_cp". No data-parallel dimension:
  /// nothing to split (one process's shards, on every rank). The groups
  /// are the mesh's, except reshard_after_forward's as an int (made here).
  FullyShardedReplication(const ProcessState& state, ShardingOptions options, const DeviceMesh& mesh);

  ModelReplica prepare_model(const std::shared_ptr<torch::nn::Module>& module) override;
  bool fills_meta_tensors() const override { return true; }
  std::shared_ptr<OptimizerTensors> prepare_optimizer(
      torch::optim::Optimizer& optimizer, const std::vector<std::shared_ptr<PreparedModelCore>>& models) override;
  std::unique_ptr<OptimizerCheckpoint> optimizer_checkpoint(AcceleratedOptimizer& optimizer) const override;

 private:
  void make_shard_groups(const ProcessState& state);
  void make_post_forward_group(const ProcessState& state);
  // The global ranks of group_, in its rank order (one: this rank alone).
  std::vector<int> shard_ranks_;

  c10::intrusive_ptr<c10d::ProcessGroup> world_;         // rank 0's weights come from here
  c10::intrusive_ptr<c10d::ProcessGroup> group_;         // splits the parameters
  c10::intrusive_ptr<c10d::ProcessGroup> replicas_;      // hybrid: the same shard in the other groups
  c10::intrusive_ptr<c10d::ProcessGroup> post_forward_;  // reshard_after_forward as an int: keeps the slices
  ShardingOptions options_;
  c10::Device device_;  // where meta parameters and buffers get their memory
  std::vector<std::shared_ptr<FullyShardedModel>> models_;
};

}  // namespace accel::fsdp
