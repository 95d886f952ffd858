#include "accel/parallel/fsdp/fsdp_replication.h"

#include <algorithm>
#include <filesystem>
#include <string>

#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/optimizer_checkpoint.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/dist/process_group.h"
#include "accel/optim/accelerated_optimizer.h"
#include "accel/parallel/fsdp/sharded_optimizer.h"
#include "accel/state.h"
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

namespace {

// The group of `ranks` (this rank among them), made over the job's store
// under a name every member gives.
c10::intrusive_ptr<c10d::ProcessGroup> subgroup(const ProcessState& state, const std::vector<int>& ranks,
                                                const std::string& name) {
  Topology t = state.topology();
  t.rank = static_cast<int>(std::find(ranks.begin(), ranks.end(), state.rank()) - ranks.begin());
  t.world_size = static_cast<int>(ranks.size());
  return new_process_group(state.store(), t, state.backend(), state.timeout(),
                           state.device().is_cuda() ? state.device().index() : -1, name);
}

}  // namespace

FullyShardedReplication::FullyShardedReplication(const ProcessState& state, ShardingOptions options)
    : world_(state.process_group()), group_(world_), options_(std::move(options)) {
  check_sharding_options(options_);
  if (options_.strategy() != ShardingStrategy::hybrid_shard || !world_) return;
  const int world = state.world_size();
  const int size = options_.hybrid_shard_size() > 0 ? options_.hybrid_shard_size() : state.local_world_size();
  ACCEL_CHECK_ARG(size <= world && world % size == 0, "hybrid sharding: shard groups of ", size, " ranks (",
                  options_.hybrid_shard_size() > 0 ? "hybrid_shard_size" : "the ranks of a node",
                  ") do not divide the ", world, " ranks of the job; expected a divisor of ", world);
  if (size == world) return;  // one group: full_shard
  // Groups of consecutive ranks split the parameters; rank r's replicas are
  // the ranks at its place in the other groups.
  const int group = state.rank() / size, place = state.rank() % size;
  std::vector<int> members, replicas;
  for (int i = 0; i < size; ++i) members.push_back(group * size + i);
  for (int g = 0; g < world / size; ++g) replicas.push_back(g * size + place);
  group_ = size > 1 ? subgroup(state, members, "hsdp_shard_" + std::to_string(group)) : nullptr;
  replicas_ = subgroup(state, replicas, "hsdp_replicate_" + std::to_string(place));
}

ModelReplica FullyShardedReplication::prepare_model(const std::shared_ptr<torch::nn::Module>& module) {
  if (world_) broadcast_module_states(*module, world_);
  auto model = std::make_shared<FullyShardedModel>(module, group_, options_, replicas_);
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
