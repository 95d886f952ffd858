#include "accel/parallel/zero/zero_engine.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <map>
#include <stdexcept>
#include <unordered_map>

#include "accel/checkpoint/optimizer_state.h"
#include "accel/parallel/zero/bucketed_gradient_reducer.h"
#include "accel/parallel/zero/element_wise.h"
#include "accel/parallel/zero/full_gradient_reducer.h"
#include "accel/util/check.h"

namespace accel::zero {

namespace {

// fp16/bf16 parameters get fp32 masters; fp32 (and fp64) are stepped as they are.
torch::ScalarType master_dtype(torch::ScalarType t) {
  return t == torch::kHalf || t == torch::kBFloat16 ? torch::kFloat : t;
}

}  // namespace

ZeroEngine::ZeroEngine(std::shared_ptr<torch::nn::Module> module, torch::optim::Optimizer& optimizer,
                       c10::intrusive_ptr<c10d::ProcessGroup> group, const ShardingOptions& options)
    : module_(std::move(module)), optimizer_(optimizer), group_(std::move(group)), options_(options) {
  check_sharding_options(options_);
  ACCEL_CHECK_ARG(!shards_parameters(options_.strategy()), "ZeroEngine: strategy ", to_string(options_.strategy()),
                  " shards parameters, which this engine does not; the Accelerator "
                  "runs it with parallel/fsdp/fully_sharded_model.h");
  ACCEL_CHECK_ARG(module_, "ZeRO: the model is null");
  require_element_wise(optimizer_);
  ACCEL_CHECK_ARG(optimizer_.state().empty(),
                  "ZeRO: the optimizer already holds state (it has stepped); prepare it before its first step");
  const auto offload = options_.offload_optimizer().device();
  ACCEL_CHECK_ARG(
      offload != OffloadDevice::nvme || OffloadedUpdate::supports(optimizer_),
      "ZeRO: offload_optimizer.device nvme pages Adam/AdamW state (accel's CPU Adam); this optimizer is neither "
      "torch::optim::Adam nor AdamW; use offload_optimizer.device cpu for other element-wise optimizers");

  // Names as the unwrapped model has them; each tensor once.
  std::unordered_map<const void*, std::string> names;
  for (const auto& item : module_->named_parameters(/*recurse=*/true))
    names.emplace(item.value().unsafeGetTensorImpl(), item.key());
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> groups;
  std::vector<std::vector<torch::Tensor>> tensors;
  std::unordered_map<const void*, size_t> seen;
  for (auto& group_params : optimizer_.param_groups()) {
    groups.emplace_back();
    tensors.emplace_back();
    for (const auto& p : group_params.params()) {
      const void* key = p.unsafeGetTensorImpl();
      auto name = names.find(key);
      ACCEL_CHECK_ARG(name != names.end(), "ZeRO: the optimizer holds a parameter of shape ", p.sizes(),
                      " that is not in the prepared model; prepare the model that owns it, with its optimizer");
      if (!seen.emplace(key, groups.size() - 1).second) {
        ACCEL_CHECK_ARG(seen[key] == groups.size() - 1, "ZeRO: parameter '", name->second, "' is in two param groups");
        continue;
      }
      groups.back().emplace_back(name->second, p);
      tensors.back().push_back(p);
    }
  }
  layout_ = FlatLayout::build(groups, world_size(), options_.strategy());
  flat_ = std::make_unique<FlatParameters>(layout_, std::move(tensors));

  target_ = std::make_shared<ReductionTarget>();
  target_->layout = &layout_;
  target_->params = flat_.get();
  target_->group = group_;
  target_->separate_slices = offload != OffloadDevice::none;
  const bool on_host = offload != OffloadDevice::none;
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < layout_.groups.size(); ++g) {
    const auto& buffer = flat_->buffer(g);
    const auto range = options_.strategy() == ShardingStrategy::no_shard ? FlatRange{0, layout_.groups[g].padded_numel}
                                                                         : layout_.rank_range(g, rank());
    target_->owned.push_back(range);
    auto slice = buffer.narrow(0, range.first, range.second - range.first);
    const auto dtype = master_dtype(buffer.scalar_type());
    torch::Tensor master;
    if (dtype == buffer.scalar_type() && !on_host) {
      master = slice.detach();
    } else {
      masters_are_views_ = false;
      auto to = torch::TensorOptions().dtype(dtype).device(on_host ? torch::Device(torch::kCPU) : buffer.device());
      if (on_host && buffer.is_cuda() && options_.offload_optimizer().pin_memory()) to = to.pinned_memory(true);
      master = torch::empty(slice.sizes(), to);
      master.copy_(slice);
    }
    master.set_requires_grad(true);
    target_->grad_slices.push_back(torch::zeros(master.sizes(), master.options().requires_grad(false)));
    if (options_.offload_optimizer().delayed_update())
      spare_slices_.push_back(torch::zeros_like(target_->grad_slices.back()));
    masters_.push_back(master);
    optimizer_.param_groups()[g].params() = {master};
  }
  if (on_host && OffloadedUpdate::supports(optimizer_)) {
    const auto& first = flat_->buffer(0);
    // Exact update, nothing to gather, model on the device: the new values
    // are copied straight into the model's buffers (no staging slices).
    std::vector<torch::Tensor> destinations;
    const bool whole = world_size() == 1 || options_.strategy() == ShardingStrategy::no_shard;
    if (whole && !options_.offload_optimizer().delayed_update() && first.is_cuda())
      for (size_t g = 0; g < masters_.size(); ++g) destinations.push_back(flat_->buffer(g));
    update_ = std::make_unique<OffloadedUpdate>(optimizer_, masters_, options_.offload_optimizer(), rank(),
                                                first.options(), destinations);
  } else if (options_.offload_optimizer().delayed_update()) {
    fail<std::invalid_argument>(
        "ZeRO: offload_optimizer.delayed_update needs torch::optim::Adam or AdamW (the CPU Adam runs it in the "
        "background)");
  }
  switch (options_.strategy()) {
    case ShardingStrategy::no_shard: reducer_ = std::make_unique<FullGradientReducer>(target_, false); break;
    case ShardingStrategy::shard_optimizer: reducer_ = std::make_unique<FullGradientReducer>(target_, true); break;
    case ShardingStrategy::shard_grad_op:
      reducer_ =
          std::make_unique<BucketedGradientReducer>(target_, options_.reduce_bucket_size(), options_.overlap_comm());
      break;
    case ShardingStrategy::full_shard:
    case ShardingStrategy::hybrid_shard: break;  // refused at the top: parallel/fsdp shards parameters
  }
}

ZeroEngine::~ZeroEngine() = default;

void ZeroEngine::gradients_to_optimizer() {
  reducer_->finish();
  if (target_->slices_zero) {  // no backward since zero_grad(): the step sees zeros
    for (auto& s : target_->grad_slices) s.zero_();
    target_->slices_zero = false;
  }
  for (size_t g = 0; g < masters_.size(); ++g) masters_[g].mutable_grad() = target_->grad_slices[g];
}

void ZeroEngine::parameters_to_model() {
  if (update_) {
    if (options_.offload_optimizer().delayed_update()) return;  // at the next step (finish_pending)
    update_->wait();
    publish();
    return;
  }
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < masters_.size(); ++g) {
    auto buffer = flat_->buffer(g);
    if (options_.strategy() == ShardingStrategy::no_shard) {
      if (!masters_are_views_) buffer.copy_(masters_[g]);
      continue;
    }
    // A fresh input: the slice may be a view of the output.
    auto input = masters_[g].detach().to(buffer.device(), buffer.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
    if (group_) {
      group_->_allgather_base(buffer, input)->wait();
    } else {
      buffer.copy_(input);
    }
  }
}

void ZeroEngine::publish() {
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < masters_.size(); ++g) {
    auto buffer = flat_->buffer(g);
    auto values = update_->model_values(g);  // the model's dtype and device, never a view of buffer
    if (!group_ || options_.strategy() == ShardingStrategy::no_shard) {
      if (!values.is_same(buffer)) buffer.copy_(values);
    } else {
      group_->_allgather_base(buffer, values)->wait();
    }
  }
  unpublished_ = false;
}

bool ZeroEngine::step_optimizer(torch::optim::Optimizer& optimizer) {
  if (!update_ || &optimizer != &optimizer_) return false;
  std::vector<torch::Tensor> grads = target_->grad_slices;
  if (options_.offload_optimizer().delayed_update()) {
    // The previous update goes into the model now; this one runs while the
    // next forward and backward do, reading slices the next backward does
    // not write (the spares, zeroed by the update that read them before).
    finish_pending();
    for (size_t g = 0; g < masters_.size(); ++g) {
      std::swap(target_->grad_slices[g], spare_slices_[g]);
      masters_[g].mutable_grad() = target_->grad_slices[g];
    }
    target_->slices_zero = true;  // as after zero_grad: the next backward overwrites them
    update_->start(optimizer_, std::move(grads), /*background=*/true);
    unpublished_ = true;
  } else {
    update_->start(optimizer_, std::move(grads), /*background=*/false);
  }
  return true;
}

void ZeroEngine::finish_pending() {
  if (!update_) return;
  update_->wait();
  if (unpublished_) publish();
}

double ZeroEngine::last_update_ms() const { return update_ ? update_->last_update_ms() : 0.0; }

void ZeroEngine::zero_model_grads(bool /*set_to_none*/) {
  // The slices stay allocated (they are this rank's share); zeroing them
  // starts the next accumulation.
  reducer_->zero_grad();
  target_->slices_zero = true;
}

void ZeroEngine::collect_gradients(const std::vector<torch::Tensor>& params, std::vector<bool>& claimed,
                                   GradientSet& out) const {
  const bool sharded = options_.strategy() != ShardingStrategy::no_shard && world_size() > 1;
  if (sharded) out.group = group_;
  std::unordered_map<const void*, std::pair<size_t, size_t>> where;
  for (size_t g = 0; g < layout_.groups.size(); ++g)
    for (size_t i = 0; i < flat_->params(g).size(); ++i)
      where.emplace(flat_->params(g)[i].unsafeGetTensorImpl(), std::pair{g, i});
  for (size_t k = 0; k < params.size(); ++k) {
    auto it = where.find(params[k].unsafeGetTensorImpl());
    if (it == where.end()) continue;
    claimed[k] = true;
    const auto [g, i] = it->second;
    const auto& fp = layout_.groups[g].params[i];
    const auto [ob, oe] = target_->owned[g];
    const int64_t lo = std::max(ob, fp.offset), hi = std::min(oe, fp.offset + fp.numel);
    if (lo >= hi) continue;
    auto piece = target_->grad_slices[g].narrow(0, lo - ob, hi - lo);
    (sharded ? out.sharded : out.replicated).push_back(sharded ? piece : piece.view(fp.shape));
  }
}

ZeroMemory ZeroEngine::memory() const {
  ZeroMemory m;
  for (const auto& [name, t] : optimizer_state(optimizer_).tensors) m.optimizer_state += t.nbytes();
  if (update_) m.optimizer_state += update_->host_state_bytes();
  if (!masters_are_views_)
    for (const auto& t : masters_) m.master_weights += t.nbytes();
  if (!reducer_->slices_are_views())
    for (const auto& t : target_->grad_slices) m.gradient_slices += t.nbytes();
  m.full_gradients = reducer_->held_bytes();
  if (m.full_gradients == 0)  // ZeRO-2: model gradients still alive (none between steps)
    for (size_t g = 0; g < layout_.groups.size(); ++g)
      for (const auto& p : flat_->params(g))
        if (p.grad().defined()) m.full_gradients += p.grad().nbytes();
  m.peak_buckets = reducer_->peak_bytes();
  return m;
}

namespace {

template <typename State>
void put_state(torch::optim::Optimizer& optimizer, const torch::Tensor& master,
               std::map<std::string, torch::Tensor> fields, int64_t step) {
  auto st = std::make_unique<State>();
  st->step(step);
  st->exp_avg(fields.at("exp_avg"));
  st->exp_avg_sq(fields.at("exp_avg_sq"));
  if (auto it = fields.find("max_exp_avg_sq"); it != fields.end()) st->max_exp_avg_sq(it->second);
  optimizer.state()[master.unsafeGetTensorImpl()] = std::move(st);
}

template <typename State>
bool take_state(const torch::optim::Optimizer& optimizer, const torch::Tensor& master,
                std::map<std::string, torch::Tensor>& fields, int64_t& step) {
  auto it = optimizer.state().find(master.unsafeGetTensorImpl());
  if (it == optimizer.state().end()) return false;
  const auto* st = dynamic_cast<const State*>(it->second.get());
  if (!st) return false;
  step = st->step();
  fields["exp_avg"] = st->exp_avg();
  fields["exp_avg_sq"] = st->exp_avg_sq();
  if (st->max_exp_avg_sq().defined()) fields["max_exp_avg_sq"] = st->max_exp_avg_sq();
  return true;
}

}  // namespace

void ZeroEngine::state_to_optimizer() const {
  if (!update_) return;
  update_->wait();
  const bool adamw = dynamic_cast<const torch::optim::AdamW*>(&optimizer_) != nullptr;
  for (size_t g = 0; g < masters_.size(); ++g) {
    if (update_->step_count(g) == 0) continue;  // no state yet, as before Adam's first step
    if (adamw) {
      put_state<torch::optim::AdamWParamState>(optimizer_, masters_[g], update_->state(g), update_->step_count(g));
    } else {
      put_state<torch::optim::AdamParamState>(optimizer_, masters_[g], update_->state(g), update_->step_count(g));
    }
  }
}

OptimizerStateFiles ZeroEngine::optimizer_state_files() const {
  state_to_optimizer();
  auto files = optimizer_state(optimizer_);
  if (update_) optimizer_.state().clear();  // the engine's copy is the one that steps
  return files;
}

void ZeroEngine::state_from_optimizer() {
  if (!update_) return;
  update_->wait();
  for (size_t g = 0; g < masters_.size(); ++g) {
    std::map<std::string, torch::Tensor> fields;
    int64_t step = 0;
    if (take_state<torch::optim::AdamWParamState>(optimizer_, masters_[g], fields, step) ||
        take_state<torch::optim::AdamParamState>(optimizer_, masters_[g], fields, step)) {
      update_->load_state(g, fields, step);
    } else {
      std::map<std::string, torch::Tensor> zeros;
      for (const char* f : {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}) zeros[f] = torch::zeros({masters_[g].numel()});
      update_->load_state(g, zeros, 0);
    }
  }
  optimizer_.state().clear();
}

}  // namespace accel::zero
