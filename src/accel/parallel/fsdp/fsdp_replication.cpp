#include "accel/parallel/fsdp/fsdp_replication.h"

#include <filesystem>
#include <string>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/optimizer_checkpoint.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/optim/accelerated_optimizer.h"
#include "accel/parallel/fsdp/sharded_optimizer.h"
#include "accel/util/check.h"

namespace fs = std::filesystem;

namespace accel::fsdp {

namespace {

std::string rank_file(size_t index, int rank, const std::string& extension) {
  return numbered("fsdp_optimizer", index, "") + "_rank" + std::to_string(rank) + extension;
}

// Each rank's optimizer state over its pieces: the same pieces exist only
// in a run with as many processes.
class ShardedOptimizerCheckpoint : public OptimizerCheckpoint {
 public:
  explicit ShardedOptimizerCheckpoint(torch::optim::Optimizer& optimizer) : optimizer_(optimizer) {}

  void save(const fs::path& dir, size_t index, int rank) override {
    const auto files = optimizer_state(optimizer_);
    safetensors::save_file(files.tensors, dir / rank_file(index, rank, ".safetensors"));
    write_file_atomic(dir / rank_file(index, rank, ".json"), files.json);
  }

  std::string other_world_refusal(const fs::path& dir, size_t index) const override {
    return "its optimizer state is sharded per process (" + rank_file(index, 0, ".safetensors") +
           ", ...) and full_shard does not reshard it yet; resume with as many processes as saved it";
  }

  std::vector<fs::path> files_to_load(const fs::path& dir, size_t index, int rank, bool) const override {
    return {dir / rank_file(index, rank, ".safetensors"), dir / rank_file(index, rank, ".json")};
  }

  void load(const fs::path& dir, size_t index, int rank, bool) override {
    const auto file = dir / rank_file(index, rank, ".safetensors");
    load_optimizer_state(optimizer_, safetensors::load_file(file),
                         read_checkpoint_text(dir / rank_file(index, rank, ".json")), "'" + file.string() + "'");
  }

 private:
  torch::optim::Optimizer& optimizer_;
};

}  // namespace

FullyShardedReplication::FullyShardedReplication(c10::intrusive_ptr<c10d::ProcessGroup> group, ShardingOptions options)
    : group_(std::move(group)), options_(std::move(options)) {
  check_sharding_options(options_);
}

ModelReplica FullyShardedReplication::prepare_model(const std::shared_ptr<torch::nn::Module>& module) {
  if (group_) broadcast_module_states(*module, group_);
  auto model = std::make_shared<FullyShardedModel>(module, group_, options_);
  models_.push_back(model);
  return {nullptr, model};
}

std::shared_ptr<OptimizerTensors> FullyShardedReplication::prepare_optimizer(
    torch::optim::Optimizer& optimizer, const std::vector<std::shared_ptr<PreparedModelCore>>&) {
  return std::make_shared<ShardedOptimizerTensors>(optimizer, models_);
}

std::unique_ptr<OptimizerCheckpoint> FullyShardedReplication::optimizer_checkpoint(
    AcceleratedOptimizer& optimizer) const {
  if (dynamic_cast<ShardedOptimizerTensors*>(optimizer.tensors()))
    return std::make_unique<ShardedOptimizerCheckpoint>(optimizer.optimizer());
  return Replication::optimizer_checkpoint(optimizer);
}

}  // namespace accel::fsdp
