#include "accel/parallel/zero/zero_replication.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

#include "accel/optim/accelerated_optimizer.h"
#include "accel/parallel/fsdp/wrap_policy.h"
#include "accel/parallel/zero/zero_engine.h"
#include "accel/parallel/zero/zero_optimizer_checkpoint.h"
#include "accel/prepared_model.h"
#include "accel/util/check.h"

namespace accel::zero {

ZeroReplication::ZeroReplication(c10::intrusive_ptr<c10d::ProcessGroup> group, ShardingOptions options)
    : group_(std::move(group)), options_(std::move(options)) {
  check_sharding_options(options_);
}

ModelReplica ZeroReplication::prepare_model(const std::shared_ptr<torch::nn::Module>& module) {
  broadcast_module_states(*module, group_);
  // The units the wrap policy picks recompute their forward in backward;
  // nothing is sharded at them under these strategies.
  if (options_.activation_checkpointing())
    for (const auto& unit : fsdp::plan_units(*module, options_))
      if (unit.slot) unit.slot->set_checkpoint(true);
  return {};
}

std::shared_ptr<OptimizerTensors> ZeroReplication::prepare_optimizer(
    torch::optim::Optimizer& optimizer, const std::vector<std::shared_ptr<PreparedModelCore>>& models) {
  std::vector<const void*> wanted;
  for (const auto& g : optimizer.param_groups())
    for (const auto& p : g.params()) wanted.push_back(p.unsafeGetTensorImpl());
  for (const auto& core : models) {
    const auto& module = core->module_ptr();
    if (std::find(bound_.begin(), bound_.end(), module.get()) != bound_.end()) continue;
    std::unordered_set<const void*> own;
    for (const auto& p : module->parameters()) own.insert(p.unsafeGetTensorImpl());
    if (wanted.empty() || !std::all_of(wanted.begin(), wanted.end(), [&](const void* k) { return own.count(k); }))
      continue;
    auto engine = std::make_shared<ZeroEngine>(module, optimizer, group_, options_);
    bound_.push_back(module.get());
    return engine;
  }
  fail<std::invalid_argument>(
      "ZeRO (AcceleratorOptions::sharding) builds one engine per model and its optimizer: prepare them together, "
      "the model first, as in accelerator.prepare(model, optimizer, ...); no prepared model without an optimizer "
      "holds all of this optimizer's parameters");
}

std::unique_ptr<OptimizerCheckpoint> ZeroReplication::optimizer_checkpoint(AcceleratedOptimizer& optimizer) const {
  // An engine of this mode stands behind every optimizer it prepared.
  if (auto* engine = dynamic_cast<ZeroEngine*>(optimizer.tensors())) return zero_optimizer_checkpoint(*engine);
  return Replication::optimizer_checkpoint(optimizer);
}

}  // namespace accel::zero
