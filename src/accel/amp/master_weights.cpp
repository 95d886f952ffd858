#include "accel/amp/master_weights.h"

#include <map>
#include <stdexcept>
#include <tuple>

#include <ATen/ops/_foreach_copy.h>
#include <ATen/ops/_foreach_zero.h>
#include <torch/utils.h>

#include "accel/util/check.h"

namespace accel {

MasterWeights::MasterWeights(torch::optim::Optimizer& optimizer) {
  ACCEL_CHECK_ARG(optimizer.state().empty(),
                  "master weights: the optimizer already holds state (it has stepped); "
                  "prepare it before its first step");
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) {
      if (!p.is_floating_point()) continue;
      auto master = p.detach().to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true).set_requires_grad(true);
      index_[p.unsafeGetTensorImpl()] = model_.size();
      model_.push_back(p);
      masters_.push_back(master);
      p = master;
    }
}

namespace {
// dst[i] = src[i] (cast to dst's dtype) for every pair, as one multi-tensor
// kernel per (device, source dtype, destination dtype): a GPT-2's 148
// parameters are then 1 launch each way instead of 148, which on the GPU
// was 7% of a training step (small copies cost their launch, not their
// bytes). ATen falls back to one copy per tensor where strides differ.
void copy_each(const std::vector<torch::Tensor>& dst, const std::vector<torch::Tensor>& src) {
  using Key = std::tuple<c10::DeviceType, c10::DeviceIndex, c10::ScalarType, c10::ScalarType>;
  std::map<Key, std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>> groups;
  for (size_t i = 0; i < dst.size(); ++i) {
    auto& group =
        groups[Key{dst[i].device().type(), dst[i].device().index(), src[i].scalar_type(), dst[i].scalar_type()}];
    group.first.push_back(dst[i]);
    group.second.push_back(src[i]);
  }
  for (auto& [key, lists] : groups) at::_foreach_copy_(lists.first, lists.second);
}
}  // namespace

void MasterWeights::copy_grads_to_masters() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> dst, src;
  for (size_t i = 0; i < model_.size(); ++i) {
    const auto& g = model_[i].grad();
    auto& master_grad = masters_[i].mutable_grad();
    if (!g.defined()) {
      master_grad = torch::Tensor();
      continue;
    }
    if (!master_grad.defined()) master_grad = torch::empty_like(g, g.options().dtype(torch::kFloat));
    dst.push_back(master_grad);
    src.push_back(g);
  }
  copy_each(dst, src);
}

void MasterWeights::copy_masters_to_model() {
  torch::NoGradGuard no_grad;
  copy_each(model_, masters_);
}

void MasterWeights::zero_model_grads(bool set_to_none) {
  std::vector<torch::Tensor> to_zero;
  for (auto& p : model_) {
    auto& g = p.mutable_grad();
    if (!g.defined()) continue;
    if (set_to_none) {
      g = torch::Tensor();
    } else {
      g = g.detach();
      to_zero.push_back(g);
    }
  }
  if (!to_zero.empty()) at::_foreach_zero_(to_zero);
}

void MasterWeights::collect_gradients(const std::vector<torch::Tensor>& params, std::vector<bool>& claimed,
                                      GradientSet& out) const {
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = index_.find(params[i].unsafeGetTensorImpl());
    if (it == index_.end()) continue;
    claimed[i] = true;
    if (const auto& g = masters_[it->second].grad(); g.defined()) out.replicated.push_back(g);
  }
}

torch::Tensor MasterWeights::master_of(const torch::Tensor& model_param) const {
  auto it = index_.find(model_param.unsafeGetTensorImpl());
  return it == index_.end() ? model_param : masters_[it->second];
}

}  // namespace accel
