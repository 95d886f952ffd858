#include "accel/parallel/fsdp/fsdp_replication.h"

#include <algorithm>
#include <string>

#include "accel/big_model/empty_init.h"
#include "accel/dist/collectives.h"
#include "accel/dist/process_group.h"
#include "accel/optim/accelerated_optimizer.h"
#include "accel/parallel/fsdp/sharded_optimizer.h"
#include "accel/parallel/fsdp/sharded_optimizer_checkpoint.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/state.h"
#include "accel/util/check.h"

namespace accel::fsdp {

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
    : world_(state.process_group()), group_(world_), options_(std::move(options)), device_(state.device()) {
  check_sharding_options(options_);
  shard_ranks_ = {state.rank()};
  if (world_) {
    shard_ranks_.clear();
    for (int r = 0; r < state.world_size(); ++r) shard_ranks_.push_back(r);
  }
  make_shard_groups(state);
  make_post_forward_group(state);
}

namespace {
bool has_dim(const DeviceMesh& mesh, const std::string& dim) {
  const auto names = mesh.dim_names();
  return std::find(names.begin(), names.end(), dim) != names.end();
}
}  // namespace

FullyShardedReplication::FullyShardedReplication(const ProcessState& state, ShardingOptions options,
                                                 const DeviceMesh& mesh)
    : options_(std::move(options)), device_(state.device()) {
  check_sharding_options(options_);
  const auto& c = mesh.config();
  ACCEL_CHECK_ARG(options_.strategy() != ShardingStrategy::hybrid_shard || options_.hybrid_shard_size() == 0 ||
                      options_.hybrid_shard_size() == c.dp_shard_size,
                  "parameter sharding on a device mesh: hybrid_shard_size is ", options_.hybrid_shard_size(),
                  " but the mesh's dp_shard_size is ", c.dp_shard_size,
                  "; expected them equal (or hybrid_shard_size unset: the mesh decides)");
  // With context parallel the cp ranks hold the same parameters too (each
  // its part of every sequence): FSDP2 shards over dp_shard x cp.
  const bool cp = c.cp_size > 1;
  const std::string holders = cp ? "dp_cp" : "dp", shard = cp ? "dp_shard_cp" : "dp_shard";
  if (has_dim(mesh, holders)) world_ = mesh.group(holders);
  if (has_dim(mesh, shard)) {
    group_ = mesh.group(shard);
    shard_ranks_ = mesh.slice(shard);
  } else {
    shard_ranks_ = {state.rank()};
  }
  if (has_dim(mesh, "dp_replicate")) replicas_ = mesh.group("dp_replicate");
  make_post_forward_group(state);
}

void FullyShardedReplication::make_shard_groups(const ProcessState& state) {
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
  shard_ranks_ = members;
  replicas_ = subgroup(state, replicas, "hsdp_replicate_" + std::to_string(place));
}

// reshard_after_forward as an int k: runs of k consecutive ranks of the
// shard group (FSDP2 views its mesh as (-1, k)).
void FullyShardedReplication::make_post_forward_group(const ProcessState& state) {
  const int size = group_ ? group_->getSize() : 1;
  const auto k = static_cast<int>(options_.reshard_after_forward().ranks(size));
  if (k == 1 || k == size) return;
  const int place = group_->getRank();
  std::vector<int> members;
  for (int i = 0; i < k; ++i) members.push_back(shard_ranks_.at(static_cast<size_t>(place / k * k + i)));
  post_forward_ = subgroup(state, members, "fsdp_post_forward_" + std::to_string(members.front()));
}

ModelReplica FullyShardedReplication::prepare_model(const std::shared_ptr<torch::nn::Module>& module) {
  // Which processes built the model on the meta device: every rank must
  // take the same path (the collectives must match).
  std::string first_meta;
  for (const auto& item : module->named_parameters())
    if (item.value().is_meta() && first_meta.empty()) first_meta = item.key();
  for (const auto& item : module->named_buffers())
    if (item.value().is_meta() && first_meta.empty()) first_meta = item.key();
  std::vector<std::string> metas{first_meta};
  if (world_) metas = gather_object(first_meta, world_);
  const bool any_meta = std::any_of(metas.begin(), metas.end(), [](const std::string& m) { return !m.empty(); });
  ACCEL_CHECK_ARG(metas.front().empty(), "parameter sharding: '", metas.front(),
                  "' is on the meta device on the main process; the main process must hold the weights (only the "
                  "other processes may build the model without memory)");
  FromMainProcess from_main{world_, device_};
  if (any_meta) {
    torch::NoGradGuard no_grad;
    for (auto& b : module->buffers()) {  // few and small: one broadcast each
      if (b.is_meta()) replace_tensor_data(b, torch::empty(b.sizes(), b.options().device(device_)));
      std::vector<at::Tensor> one{b};
      world_->broadcast(one)->wait();
    }
  } else if (world_) {
    broadcast_module_states(*module, world_);
  }
  auto model = std::make_shared<FullyShardedModel>(module, group_, options_, replicas_, any_meta ? &from_main : nullptr,
                                                   post_forward_);
  models_.push_back(model);
  return {nullptr, model};
}

std::shared_ptr<OptimizerTensors> FullyShardedReplication::prepare_optimizer(
    torch::optim::Optimizer& optimizer, const std::vector<std::shared_ptr<PreparedModelCore>>&) {
  return std::make_shared<ShardedOptimizerTensors>(optimizer, models_);
}

std::unique_ptr<OptimizerCheckpoint> FullyShardedReplication::optimizer_checkpoint(
    AcceleratedOptimizer& optimizer) const {
  if (auto* tensors = dynamic_cast<ShardedOptimizerTensors*>(optimizer.tensors()))
    return sharded_optimizer_checkpoint(optimizer.optimizer(), *tensors, world_ ? world_->getSize() : 1);
  return Replication::optimizer_checkpoint(optimizer);
}

}  // namespace accel::fsdp
