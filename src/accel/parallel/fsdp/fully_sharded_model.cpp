#include "accel/parallel/fsdp/fully_sharded_model.h"

#include <algorithm>
#include <atomic>
#include <optional>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <stdexcept>
#include <unordered_map>

#include "accel/checkpoint/model_files.h"
#include "accel/parallel/fsdp/copy_streams.h"
#include "accel/parallel/fsdp/state_file.h"
#include "accel/parallel/fsdp/wrap_policy.h"
#include "accel/util/check.h"

namespace accel::fsdp {

// What a sharded unit's accel::Unit calls around its block.
class FullyShardedModel::UnitForward : public UnitHooks {
 public:
  // `cast_inputs`: floating-point inputs are cast to this dtype (FSDP2's cast_forward_inputs).
  UnitForward(FullyShardedModel& model, size_t k, std::optional<torch::ScalarType> cast_inputs)
      : model_(model), k_(k), cast_inputs_(cast_inputs) {}
  void pre_forward(const std::vector<torch::Tensor>& inputs) override { model_.pre_forward(k_, inputs); }
  void post_forward(std::vector<torch::Tensor>& outputs) override { model_.post_forward(k_, outputs); }
  bool replaces_tensors() const override { return cast_inputs_.has_value(); }
  void replace_inputs(std::vector<torch::Tensor>& inputs) override {
    for (auto& in : inputs)
      if (in.defined() && in.is_floating_point() && in.scalar_type() != *cast_inputs_) in = in.to(*cast_inputs_);
  }

 private:
  FullyShardedModel& model_;
  size_t k_;
  std::optional<torch::ScalarType> cast_inputs_;
};

FullyShardedModel::FullyShardedModel(std::shared_ptr<torch::nn::Module> model,
                                     c10::intrusive_ptr<c10d::ProcessGroup> group, ShardingOptions options,
                                     c10::intrusive_ptr<c10d::ProcessGroup> replicas, const FromMainProcess* from_main,
                                     c10::intrusive_ptr<c10d::ProcessGroup> post_forward_ranks)
    : model_(std::move(model)),
      group_(std::move(group)),
      options_(std::move(options)),
      alive_(std::make_shared<char>()) {
  ACCEL_CHECK_ARG(model_, "parameter sharding: the model is null");
  check_sharding_options(options_);
  const int64_t size = group_ ? group_->getSize() : 1, keep = options_.reshard_after_forward().ranks(size);
  if (keep != 1 && keep != size) {
    ACCEL_CHECK_ARG(post_forward_ranks && post_forward_ranks->getSize() == keep,
                    "parameter sharding: reshard_after_forward is ", keep, " but the group of ranks keeping slices ",
                    post_forward_ranks ? "has " + std::to_string(post_forward_ranks->getSize()) + " ranks" : "is null");
    post_forward_ = std::move(post_forward_ranks);
  }
  auto plan = plan_units(*model_, options_);
  ShardPlacement placement;
  const auto& param_offload = options_.offload_param();
  placement.host_params = param_offload.device() != OffloadDevice::none;
  placement.host_masters = placement.host_params || options_.offload_optimizer().device() != OffloadDevice::none;
  placement.pin_memory = placement.host_params ? param_offload.pin_memory() : options_.offload_optimizer().pin_memory();
  // offload_param nvme: a folder of this process's own under nvme_path
  // (made now, so that a path that cannot take it fails at prepare), and in
  // it a file per unit, except for the units whose shards lie within the
  // first max_in_cpu elements, the units taken in the order they are made
  // (as DeepSpeed keeps the parameter partitions of its sub-groups in host
  // memory up to max_in_cpu elements, and the rest on NVMe).
  std::shared_ptr<const ScratchFolder> folder;
  if (param_offload.device() == OffloadDevice::nvme) {
    static std::atomic<int> models{0};
    folder = ScratchFolder::create(param_offload.nvme_path(),
                                   "accel_params_" + process_scratch_name() + "_" + std::to_string(models++));
  }
  int64_t offset = 0;  // shard elements of the units before this one
  for (auto& planned : plan) {
    if (planned.params.empty()) continue;  // a root with nothing left
    ShardPlacement here = placement;
    if (folder) {
      const int64_t numel = ShardedUnit::shard_numel(planned.params, static_cast<int>(size));
      if (offset + numel > param_offload.max_in_cpu()) here.nvme_folder = folder;
      offset += numel;
    }
    units_.push_back(std::make_unique<ShardedUnit>(planned.path, planned.params, group_, replicas, here, from_main,
                                                   options_.mixed_precision_policy()));
    slots_.push_back(planned.slot);
  }
  progress_.resize(units_.size());
  for (const auto& unit : units_) {
    int64_t numel = 0;
    for (const auto& p : unit->parameters()) numel += p.numel();
    numels_.push_back(numel);
  }
  if (placement.host_masters && !units_.empty()) {
    if (auto streams = copy_streams_for(units_.front()->parameters().front().device())) {
      streams_ = std::make_shared<const CopyStreams>(*streams);
      for (auto& unit : units_) unit->set_copy_streams(streams_);
    }
  }
  for (const auto& unit : units_)
    for (size_t i = 0; i < unit->parameters().size(); ++i)
      places_.emplace(unit->parameters()[i].unsafeGetTensorImpl(), std::pair{unit.get(), i});
  for (size_t k = 0; k < units_.size(); ++k) {
    if (slots_[k]) {
      const auto& policy = options_.mixed_precision_policy();
      std::optional<torch::ScalarType> cast_inputs;
      if (policy.cast_forward_inputs() && policy.param_dtype()) cast_inputs = policy.param_dtype();
      slots_[k]->set_hooks(std::make_shared<UnitForward>(*this, k, cast_inputs));
      if (options_.activation_checkpointing()) slots_[k]->set_checkpoint(true);
    }
    for (const auto& p : units_[k]->parameters()) {
      if (!p.requires_grad()) continue;
      auto accumulator = torch::autograd::impl::grad_accumulator(p);
      auto key = accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [this, k](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
            on_gradient(k);
            return outputs;
          }));
      accumulator_hooks_.emplace_back(std::move(accumulator), key);
    }
  }
}

FullyShardedModel::~FullyShardedModel() {
  for (auto& slot : slots_) {
    if (!slot) continue;
    slot->set_hooks(nullptr);
    if (options_.activation_checkpointing()) slot->set_checkpoint(false);
  }
  for (auto& [accumulator, key] : accumulator_hooks_) accumulator->del_post_hook(key);
}

// The root is the last unit when the model has parameters outside every
// sharded unit (plan_units puts it there).
void FullyShardedModel::before_forward() {
  if (!in_backward_ && !order_.empty()) last_order_ = std::move(order_);
  order_.clear();
  // The model's inputs are not seen here: the root's backward ends with its
  // parameters' gradients (or at the end of backward).
  if (!units_.empty() && !slots_.back()) pre_forward(units_.size() - 1, {});
}

void FullyShardedModel::after_forward(std::vector<torch::Tensor>& outputs) {
  if (!units_.empty() && !slots_.back()) post_forward(units_.size() - 1, outputs);
}

void FullyShardedModel::unshard(size_t k) {
  if (units_[k]->unsharded()) return;
  while (!freed_.empty() && (freed_.size() > 1 || freed_.front().query())) {
    freed_.front().synchronize();
    freed_.pop_front();
  }
  units_[k]->unshard();
  read_ahead_after(k);
  int64_t now = 0;
  for (const auto& u : units_)
    if (u->unsharded()) now += u->unsharded_bytes();
  peak_unsharded_ = std::max(peak_unsharded_, now);
}

// offload_param nvme: the file of the unit predicted to be gathered after
// k (as the prefetches predict it: in forward the one that followed k in
// the previous forward, in backward the one before k in this forward)
// starts for memory while k computes.
void FullyShardedModel::read_ahead_after(size_t k) {
  if (options_.offload_param().device() != OffloadDevice::nvme) return;
  if (in_backward_) {
    auto at = std::find(order_.begin(), order_.end(), k);
    while (at != order_.begin() && at != order_.end()) {
      const size_t before = *--at;
      if (progress_[before].forward_ran && !progress_[before].backward_done) {
        units_[before]->read_ahead();
        return;
      }
    }
    return;
  }
  auto at = std::find(last_order_.begin(), last_order_.end(), k);
  if (at != last_order_.end() && at + 1 != last_order_.end()) units_[*(at + 1)]->read_ahead();
}

void FullyShardedModel::reshard(size_t k, bool keep_slice) {
  if (!units_[k]->unsharded()) return;
  if (keep_slice) {
    units_[k]->reshard_keeping_slice(post_forward_);
  } else {
    units_[k]->reshard();
  }
  if (!streams_) return;
  c10::Event done(streams_->to_device.device_type());
  done.record(current_stream(streams_->to_device.device()));
  freed_.push_back(std::move(done));
}

void FullyShardedModel::pre_forward(size_t k, const std::vector<torch::Tensor>& inputs) {
  unshard(k);
  if (!in_backward_) {  // not a checkpointed unit's recompute
    order_.push_back(k);
    if (options_.forward_prefetch()) prefetch_forward(k);
  }
  progress_[k].forward_ran = true;
  if (!torch::GradMode::is_enabled()) return;
  std::weak_ptr<char> alive = alive_;
  for (const auto& in : inputs) {
    if (!in.defined() || !in.requires_grad()) continue;
    ++progress_[k].inputs_pending;
    // A copy: the hook goes on the caller's tensor, which `in` shares.
    torch::Tensor(in).register_hook([this, k, alive](const at::TensorBase&) {
      if (!alive.expired()) on_input_gradient(k);
    });
  }
}

void FullyShardedModel::post_forward(size_t k, std::vector<torch::Tensor>& outputs) {
  const bool root = !slots_[k];
  const bool grad = torch::GradMode::is_enabled();
  if (!root) {
    // An int keeps a slice for the gather before backward; without
    // gradients no backward follows, and the unit is freed whole.
    if (post_forward_) {
      reshard(k, /*keep_slice=*/grad);
    } else if (!options_.reshard_after_forward().keeps_everything()) {
      reshard(k);
    }
  }
  if (!grad) {
    if (root) reshard(k);  // no backward follows (evaluation)
    return;
  }
  std::weak_ptr<char> alive = alive_;
  for (auto& out : outputs) {
    if (!out.defined() || !out.requires_grad()) continue;
    out.register_hook([this, k, alive](const at::TensorBase&) {
      if (!alive.expired()) pre_backward(k);
    });
  }
}

void FullyShardedModel::queue_end_backward() {
  in_backward_ = true;
  if (end_queued_) return;
  end_queued_ = true;
  std::weak_ptr<char> alive = alive_;
  torch::autograd::Engine::get_default_engine().queue_callback([this, alive] {
    if (!alive.expired()) end_backward();
  });
}

void FullyShardedModel::pre_backward(size_t k) {
  queue_end_backward();
  unshard(k);
  if (options_.backward_prefetch() == BackwardPrefetch::backward_pre) prefetch_backward(k);
}

// The unit after k in the previous forward, when it has not run in this one.
void FullyShardedModel::prefetch_forward(size_t k) {
  auto at = std::find(last_order_.begin(), last_order_.end(), k);
  if (at == last_order_.end() || at + 1 == last_order_.end()) return;
  const size_t next = *(at + 1);
  if (std::find(order_.begin(), order_.end(), next) == order_.end()) prefetch(next);
}

void FullyShardedModel::prefetch(size_t k) {
  if (units_[k]->unsharded()) return;
  if (const int64_t bound = options_.max_live_parameters(); bound > 0) {
    int64_t live = numels_[k];
    for (size_t u = 0; u < units_.size(); ++u)
      if (units_[u]->unsharded()) live += numels_[u];
    if (live > bound) return;
  }
  unshard(k);
}

// The unit whose backward comes next: the last one before k in this
// forward's order that ran forward and whose backward is still to come.
// Every rank ran the same forward, so every rank gathers the same unit.
void FullyShardedModel::prefetch_backward(size_t k) {
  auto at = std::find(order_.begin(), order_.end(), k);
  while (at != order_.begin()) {
    const size_t before = *--at;
    if (progress_[before].forward_ran && !progress_[before].backward_done) {
      prefetch(before);
      return;
    }
  }
}

void FullyShardedModel::on_gradient(size_t k) {
  queue_end_backward();
  ++progress_[k].grads_ready;
  maybe_post_backward(k);
}

void FullyShardedModel::on_input_gradient(size_t k) {
  queue_end_backward();
  if (progress_[k].inputs_pending > 0) --progress_[k].inputs_pending;
  maybe_post_backward(k);
}

void FullyShardedModel::maybe_post_backward(size_t k) {
  const auto& p = progress_[k];
  if (p.grads_ready >= units_[k]->num_trainable() && p.inputs_pending == 0) post_backward(k);
}

void FullyShardedModel::post_backward(size_t k, bool prefetch) {
  if (progress_[k].backward_done) return;
  progress_[k].backward_done = true;
  if (prefetch && options_.backward_prefetch() == BackwardPrefetch::backward_post) prefetch_backward(k);
  if (sync_) units_[k]->reduce_gradients();
  if (reshard_after_backward_) reshard(k);
}

void FullyShardedModel::end_backward() {
  // In unit order, the same on every rank: the collectives must match.
  for (size_t k = 0; k < units_.size(); ++k)
    if (progress_[k].forward_ran || progress_[k].grads_ready > 0) post_backward(k, /*prefetch=*/false);
  for (auto& p : progress_) p = Progress{};
  end_queued_ = false;
  in_backward_ = false;
}

std::pair<ShardedUnit*, size_t> FullyShardedModel::find(const torch::Tensor& param) const {
  auto it = places_.find(param.unsafeGetTensorImpl());
  return it == places_.end() ? std::pair<ShardedUnit*, size_t>{nullptr, 0} : it->second;
}

void FullyShardedModel::reshard_all() {
  for (auto& unit : units_) unit->reshard();
}

void FullyShardedModel::zero_grad() {
  for (auto& unit : units_) unit->zero_grad();
}

ShardedMemory FullyShardedModel::memory() const {
  ShardedMemory m;
  for (const auto& unit : units_) {
    m.shards += unit->shard_bytes();
    m.host += unit->host_bytes();
    m.files += unit->file_bytes();
    m.full += unit->unsharded_bytes();
    if (unit->unsharded()) m.unsharded += unit->unsharded_bytes();
  }
  m.peak_unsharded = peak_unsharded_;
  return m;
}

safetensors::NamedTensors FullyShardedModel::full_state() {
  // One unit gathered at a time, copied out, and freed again if it was.
  std::unordered_map<const void*, torch::Tensor> copies;
  torch::NoGradGuard no_grad;
  for (auto& unit : units_) {
    if (unit->casts()) {  // the parameters' own dtype, from the shards
      const auto values = unit->full_precision_parameters();
      for (size_t i = 0; i < values.size(); ++i)
        copies[unit->parameters()[i].unsafeGetTensorImpl()] = values[i].to(torch::kCPU);
      continue;
    }
    const bool was = unit->unsharded();
    unit->unshard();
    for (const auto& p : unit->parameters())
      copies[p.unsafeGetTensorImpl()] = p.detach().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
    if (!was) unit->reshard();
  }
  auto state = model_state(*model_);
  for (auto& [name, t] : state) {
    auto it = copies.find(t.unsafeGetTensorImpl());
    t = it != copies.end() ? it->second : t.detach().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
  }
  return state;
}

void FullyShardedModel::write_full_parameters(const std::function<void()>& write) {
  // The whole model at once: write may touch any parameter.
  for (auto& unit : units_) unit->unshard_for_write();
  write();
  for (auto& unit : units_) {
    unit->keep_written_shard();
    unit->reshard();
  }
}

}  // namespace accel::fsdp
