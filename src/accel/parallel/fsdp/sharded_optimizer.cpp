#include "accel/parallel/fsdp/sharded_optimizer.h"

#include <algorithm>
#include <future>
#include <stdexcept>
#include <unordered_map>

#include <torch/cuda.h>

#include "accel/optim/cpu_adam.h"
#include "accel/parallel/fsdp/paged_adam_state.h"
#include "accel/parallel/zero/element_wise.h"
#include "accel/util/check.h"

namespace accel::fsdp {

ShardedOptimizerTensors::ShardedOptimizerTensors(torch::optim::Optimizer& optimizer,
                                                 std::vector<std::shared_ptr<FullyShardedModel>> models)
    : models_(std::move(models)) {
  zero::require_element_wise(optimizer);
  ACCEL_CHECK_ARG(optimizer.state().empty(),
                  "parameter sharding: the optimizer already holds state (it has stepped); prepare it before its "
                  "first step");
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      const Place place = place_of(p);
      ACCEL_CHECK_ARG(place.unit, "parameter sharding: the optimizer holds a parameter of shape ", p.sizes(),
                      " that is in no prepared model; prepare the model that owns it before its optimizer");
      if (std::find(units_.begin(), units_.end(), place.unit) == units_.end()) units_.push_back(place.unit);
      offloaded_ = offloaded_ || place.unit->placement().host_masters;
      if (p.is_cuda()) device_ = p.device();
      places_.push_back(place);
      p = place.unit->piece(place.index);
    }
  }
  if (!models_.empty()) group_ = models_.front()->process_group();
  const auto& offload = models_.empty() ? OffloadOptions() : models_.front()->options().offload_optimizer();
  if (offload.device() == OffloadDevice::nvme) {
    ACCEL_CHECK_ARG(PagedAdamState::supports(optimizer),
                    "parameter sharding: offload_optimizer device nvme pages the state of accel's CPU Adam, and this "
                    "optimizer is neither Adam nor AdamW; expected device cpu, or Adam/AdamW");
    paged_ = std::make_shared<PagedAdamState>(offload.nvme_path(), units_);
  }
}

ShardedOptimizerTensors::Place ShardedOptimizerTensors::place_of(const torch::Tensor& param) const {
  for (size_t m = 0; m < models_.size(); ++m) {
    auto [unit, index] = models_[m]->find(param);
    if (unit) return {unit, index, m};
  }
  return {nullptr, 0};
}

void ShardedOptimizerTensors::wait_for_device() const {
  // Offloaded gradient shards arrive, and the gathers read the host
  // copies, asynchronously: the host reads or writes them after this.
  if (offloaded_ && device_) torch::cuda::synchronize(device_->index());
}

void ShardedOptimizerTensors::gradients_to_optimizer() {
  wait_for_device();
  for (auto* unit : units_) unit->gradients_to_pieces();
}

bool ShardedOptimizerTensors::step_optimizer(torch::optim::Optimizer& optimizer) {
  copies_written_ = false;
  if (!offloaded_) return false;
  finish_pending();
  wait_for_device();
  // Each piece's copy (in the parameters' dtype) and its unit's deferred clipping factor.
  std::unordered_map<const void*, std::pair<torch::Tensor, ShardedUnit*>> pieces;
  for (auto* unit : units_)
    for (size_t i = 0; i < unit->parameters().size(); ++i)
      pieces.emplace(unit->piece(i).unsafeGetTensorImpl(), std::pair{unit->piece_copy(i), unit});
  if (paged_) paged_->place(optimizer);  // before planning: the tasks take the state tensors
  auto tasks = plan_cpu_adam_step(optimizer, [&](const torch::Tensor& piece, CpuAdamSlice& slice) {
    auto it = pieces.find(piece.unsafeGetTensorImpl());
    if (it == pieces.end()) return;
    slice.param_copy = it->second.first;
    slice.grad_scale = it->second.second->grad_scale();
  });
  if (!tasks) {  // the optimizer's own step() reads the gradients as they are
    for (auto* unit : units_) unit->apply_grad_scale();
    return false;
  }
  copies_written_ = true;
  // The tasks hold the gradients now; the pieces let go of theirs, so that
  // nothing (a zero_grad that zeroes in place) writes them mid-update.
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad().reset();
  // The update runs on a thread of its own, a unit at a time in the order
  // the next forward gathers them (each model's root first, then its units),
  // and each unit's gather waits only for its own part: the update
  // overlaps the next forward instead of preceding it. Exact: nothing
  // reads a unit's shard before its update is done.
  std::unordered_map<const ShardedUnit*, std::vector<CpuAdamTask>> by_unit;
  for (auto& task : *tasks) by_unit[pieces.at(task.param.unsafeGetTensorImpl()).second].push_back(std::move(task));
  std::vector<std::pair<ShardedUnit*, std::vector<CpuAdamTask>>> work;
  for (const auto& model : models_) {
    const auto& units = model->units();
    std::vector<ShardedUnit*> order{units.back().get()};  // the root
    for (size_t k = 0; k + 1 < units.size(); ++k) order.push_back(units[k].get());
    for (auto* unit : order) {
      auto it = by_unit.find(unit);
      if (it != by_unit.end()) work.emplace_back(unit, std::move(it->second));
    }
  }
  auto promises = std::make_shared<std::vector<std::promise<void>>>(work.size());
  std::vector<std::vector<CpuAdamTask>> jobs;
  std::vector<const ShardedUnit*> job_units;
  for (size_t w = 0; w < work.size(); ++w) {
    work[w].first->set_pending_update((*promises)[w].get_future().share(), /*copies_written=*/true);
    jobs.push_back(std::move(work[w].second));
    job_units.push_back(work[w].first);
  }
  if (paged_ && !job_units.empty()) paged_->prefetch(job_units.front());
  if (!job_units.empty()) job_units.front()->read_ahead();
  update_ = std::async(std::launch::async, [promises, jobs = std::move(jobs), job_units, paged = paged_] {
    for (size_t w = 0; w < jobs.size(); ++w) {
      try {
        // Paged state and shards in files (offload_param nvme): the next
        // unit's pages are read while this one is stepped in place, and
        // this one's go to the drive as soon as it is done.
        if (w + 1 < jobs.size()) {
          if (paged) paged->prefetch(job_units[w + 1]);
          job_units[w + 1]->read_ahead();
        }
        for (const auto& t : jobs[w]) cpu_adam_step(t.options, t.step, t.slice);
        if (paged) paged->write_back(job_units[w]);
        job_units[w]->write_back();
        (*promises)[w].set_value();
      } catch (...) {  // this unit and every later one fail with the error
        for (size_t v = w; v < jobs.size(); ++v) (*promises)[v].set_exception(std::current_exception());
        return;
      }
    }
  });
  return true;
}

void ShardedOptimizerTensors::finish_pending() {
  if (!update_.valid()) return;
  update_.wait();
  update_ = {};
  for (auto* unit : units_) unit->wait_for_update();
}

ShardedOptimizerTensors::~ShardedOptimizerTensors() {
  if (update_.valid()) update_.wait();
}

void ShardedOptimizerTensors::parameters_to_model() {
  // The shards are the pieces the optimizer wrote; a unit still gathered
  // holds the old values: free it so that the next forward gathers anew.
  for (auto* unit : units_) {
    unit->shards_updated(copies_written_);
    unit->reshard();
  }
  copies_written_ = false;
}

void ShardedOptimizerTensors::zero_model_grads(bool /*set_to_none*/) {
  for (auto* unit : units_) unit->zero_grad();
}

void ShardedOptimizerTensors::collect_gradients(const std::vector<torch::Tensor>& params, std::vector<bool>& claimed,
                                                GradientSet& out) const {
  const bool sharded = group_ && group_->getSize() > 1;
  if (sharded) out.group = group_;
  // Per unit, the gradients asked for; a unit all of whose trainable
  // parameters are asked for and whose norm is known (offloaded) goes in
  // as one summary, the others as tensors.
  std::unordered_map<ShardedUnit*, std::vector<torch::Tensor>> asked;
  std::unordered_map<ShardedUnit*, size_t> count;
  std::vector<ShardedUnit*> order;
  for (size_t k = 0; k < params.size(); ++k) {
    const Place place = place_of(params[k]);
    if (!place.unit || std::find(units_.begin(), units_.end(), place.unit) == units_.end()) continue;
    claimed[k] = true;
    if (!place.unit->parameters()[place.index].requires_grad()) continue;
    if (count[place.unit]++ == 0) order.push_back(place.unit);
    auto grad = place.unit->piece_grad(place.index);
    if (grad.defined() && grad.numel() > 0) asked[place.unit].push_back(grad);
  }
  for (auto* unit : order) {
    auto& grads = asked[unit];
    auto sq = count[unit] == unit->num_trainable() ? unit->grad_sq_norm() : torch::Tensor();
    if (sq.defined()) {
      out.summarized.push_back({grads, sq, [unit](float factor) { unit->scale_grad_later(factor); }, sharded});
      continue;
    }
    unit->apply_grad_scale();  // a scale left from an earlier clip: the tensors are read now
    auto& list = sharded ? out.sharded : out.replicated;
    list.insert(list.end(), grads.begin(), grads.end());
  }
}

}  // namespace accel::fsdp
