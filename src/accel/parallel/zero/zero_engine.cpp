#include "accel/parallel/zero/zero_engine.h"

#include <stdexcept>
#include <unordered_map>

#include "accel/checkpoint/optimizer_state.h"
#include "accel/parallel/zero/bucketed_gradient_reducer.h"
#include "accel/parallel/zero/element_wise.h"
#include "accel/parallel/zero/full_gradient_reducer.h"

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
  if (!module_) throw std::invalid_argument("ZeRO: the model is null");
  if (!group_) throw std::invalid_argument("ZeRO: no process group");
  require_element_wise(optimizer_);
  if (!optimizer_.state().empty())
    throw std::invalid_argument(
        "ZeRO: the optimizer already holds state (it has stepped); prepare it before its "
        "first step");
  if (options_.offload_optimizer().device() == OffloadDevice::nvme)
    throw std::invalid_argument("ZeRO: offload_optimizer.device nvme is not available in this engine yet");

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
      if (name == names.end())
        throw std::invalid_argument("ZeRO: the optimizer holds a parameter of shape " + c10::str(p.sizes()) +
                                    " that is not in the prepared model; prepare the model that owns it, with its "
                                    "optimizer");
      if (!seen.emplace(key, groups.size() - 1).second) {
        if (seen[key] != groups.size() - 1)
          throw std::invalid_argument("ZeRO: parameter '" + name->second + "' is in two param groups");
        continue;
      }
      groups.back().emplace_back(name->second, p);
      tensors.back().push_back(p);
    }
  }
  layout_ = FlatLayout::build(groups, group_->getSize(), options_.strategy());
  flat_ = std::make_unique<FlatParameters>(layout_, std::move(tensors));

  target_ = std::make_shared<ReductionTarget>();
  target_->layout = &layout_;
  target_->params = flat_.get();
  target_->group = group_;
  const bool offload = options_.offload_optimizer().device() == OffloadDevice::cpu;
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < layout_.groups.size(); ++g) {
    const auto& buffer = flat_->buffer(g);
    const auto range = options_.strategy() == ShardingStrategy::no_shard ? FlatRange{0, layout_.groups[g].padded_numel}
                                                                         : layout_.rank_range(g, group_->getRank());
    target_->owned.push_back(range);
    auto slice = buffer.narrow(0, range.first, range.second - range.first);
    const auto dtype = master_dtype(buffer.scalar_type());
    torch::Tensor master;
    if (dtype == buffer.scalar_type() && !offload) {
      master = slice.detach();
    } else {
      masters_are_views_ = false;
      auto to = torch::TensorOptions().dtype(dtype).device(offload ? torch::Device(torch::kCPU) : buffer.device());
      if (offload && buffer.is_cuda() && options_.offload_optimizer().pin_memory()) to = to.pinned_memory(true);
      master = torch::empty(slice.sizes(), to);
      master.copy_(slice);
    }
    master.set_requires_grad(true);
    target_->grad_slices.push_back(torch::zeros(master.sizes(), master.options().requires_grad(false)));
    masters_.push_back(master);
    optimizer_.param_groups()[g].params() = {master};
  }
  switch (options_.strategy()) {
    case ShardingStrategy::no_shard:
      reducer_ = std::make_unique<FullGradientReducer>(target_, false);
      break;
    case ShardingStrategy::shard_optimizer:
      reducer_ = std::make_unique<FullGradientReducer>(target_, true);
      break;
    case ShardingStrategy::shard_grad_op:
      reducer_ =
          std::make_unique<BucketedGradientReducer>(target_, options_.reduce_bucket_size(), options_.overlap_comm());
      break;
  }
}

ZeroEngine::~ZeroEngine() = default;

void ZeroEngine::gradients_to_optimizer() {
  reducer_->finish();
  for (size_t g = 0; g < masters_.size(); ++g) masters_[g].mutable_grad() = target_->grad_slices[g];
}

void ZeroEngine::parameters_to_model() {
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < masters_.size(); ++g) {
    auto buffer = flat_->buffer(g);
    if (options_.strategy() == ShardingStrategy::no_shard) {
      if (!masters_are_views_) buffer.copy_(masters_[g]);
      continue;
    }
    // A fresh input: the slice may be a view of the output.
    auto input = masters_[g].detach().to(buffer.device(), buffer.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
    group_->_allgather_base(buffer, input)->wait();
  }
}

void ZeroEngine::zero_model_grads(bool /*set_to_none*/) {
  // The slices stay allocated (they are this rank's share); zeroing them
  // starts the next accumulation.
  reducer_->zero_grad();
  for (auto& s : target_->grad_slices) s.zero_();
}

void ZeroEngine::collect_gradients(const std::vector<torch::Tensor>& params, std::vector<bool>& claimed,
                                   GradientSet& out) const {
  const bool sharded = options_.strategy() != ShardingStrategy::no_shard && group_->getSize() > 1;
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

bool ZeroEngine::steps_on_host() const { return options_.offload_optimizer().device() == OffloadDevice::cpu; }

}  // namespace accel::zero
