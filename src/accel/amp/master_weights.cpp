#include "accel/amp/master_weights.h"

#include <stdexcept>

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

void MasterWeights::copy_grads_to_masters() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < model_.size(); ++i) {
    const auto& g = model_[i].grad();
    if (!g.defined()) {
      masters_[i].mutable_grad() = torch::Tensor();
    } else if (masters_[i].grad().defined()) {
      masters_[i].mutable_grad().copy_(g);
    } else {
      masters_[i].mutable_grad() = g.to(torch::kFloat, false, /*copy=*/true);
    }
  }
}

void MasterWeights::copy_masters_to_model() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < model_.size(); ++i) model_[i].copy_(masters_[i]);
}

void MasterWeights::zero_model_grads(bool set_to_none) {
  for (auto& p : model_) {
    auto& g = p.mutable_grad();
    if (!g.defined()) continue;
    if (set_to_none) {
      g = torch::Tensor();
    } else {
      g = g.detach();
      g.zero_();
    }
  }
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
