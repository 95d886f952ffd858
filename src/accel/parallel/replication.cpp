#include "accel/parallel/replication.h"

#include "accel/amp/master_weights.h"
#include "accel/checkpoint/optimizer_checkpoint.h"
#include "accel/parallel/fsdp/fsdp_replication.h"
#include "accel/parallel/zero/zero_replication.h"
#include "accel/state.h"

namespace accel {

ModelSharding::~ModelSharding() = default;

std::unique_ptr<OptimizerCheckpoint> Replication::optimizer_checkpoint(AcceleratedOptimizer& optimizer) const {
  return full_optimizer_checkpoint(optimizer);
}

namespace {

// One process, or DDP.
class Replicated : public Replication {
 public:
  Replicated(c10::intrusive_ptr<c10d::ProcessGroup> group, DDPOptions ddp, bool master_weights)
      : group_(std::move(group)), ddp_(ddp), master_weights_(master_weights) {}

  ModelReplica prepare_model(const std::shared_ptr<torch::nn::Module>& module) override {
    if (!group_) return {};
    return {std::make_unique<DataParallelEngine>(module, group_, ddp_), nullptr};
  }
  std::shared_ptr<OptimizerTensors> prepare_optimizer(torch::optim::Optimizer& optimizer,
                                                      const std::vector<std::shared_ptr<PreparedModelCore>>&) override {
    if (!master_weights_) return nullptr;
    return std::make_shared<MasterWeights>(optimizer);
  }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  DDPOptions ddp_;
  bool master_weights_;
};

}  // namespace

std::shared_ptr<Replication> make_replication(const ProcessState& state, const std::optional<ShardingOptions>& sharding,
                                              const DDPOptions& ddp, bool master_weights) {
  // Sharding with one process: nothing to split, but the engine still
  // offloads (ZeRO-Offload on one GPU) and keeps ZeRO's checkpoint files.
  if (sharding && shards_parameters(sharding->strategy()))
    return std::make_shared<fsdp::FullyShardedReplication>(state, *sharding);
  if (sharding) return std::make_shared<zero::ZeroReplication>(state.process_group(), *sharding);
  if (!state.distributed()) return std::make_shared<Replicated>(nullptr, ddp, master_weights);
  return std::make_shared<Replicated>(state.process_group(), ddp, master_weights);
}

std::shared_ptr<Replication> make_data_parallel_replication(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                                            const DDPOptions& ddp, bool master_weights) {
  return std::make_shared<Replicated>(std::move(group), ddp, master_weights);
}

}  // namespace accel
