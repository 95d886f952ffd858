#include "accel/optim/clip_grad.h"

#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>

#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>

#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel {

namespace {

// The multi-tensor kernels take lists of one device and dtype.
using Key = std::tuple<int, int, int>;

std::map<Key, std::vector<torch::Tensor>> by_device(const std::vector<torch::Tensor>& grads) {
  std::map<Key, std::vector<torch::Tensor>> out;
  for (const auto& g : grads) {
    if (!g.defined()) continue;
    out[{static_cast<int>(g.device().type()), g.device().index(), static_cast<int>(g.scalar_type())}].push_back(g);
  }
  return out;
}

std::vector<torch::Tensor> gradients_of(const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters)
    if (p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

torch::Tensor total_norm(const std::map<Key, std::vector<torch::Tensor>>& groups, double norm_type) {
  ACCEL_CHECK_ARG(!(norm_type < 0), "clip_grad_norm: norm_type is ", format_double(norm_type),
                  ", expected a value >= 0 (or inf)");
  if (groups.empty()) return torch::zeros({}, torch::kFloat);
  const auto device = groups.begin()->second.front().device();
  std::vector<torch::Tensor> norms;
  for (const auto& [key, grads] : groups)
    for (auto& n : at::_foreach_norm(grads, norm_type)) norms.push_back(n.to(device, torch::kFloat));
  auto all = torch::stack(norms);
  if (std::isinf(norm_type)) return all.max();
  return torch::linalg_vector_norm(all, norm_type);
}

}  // namespace

torch::Tensor grad_norm(const std::vector<torch::Tensor>& parameters, double norm_type) {
  torch::NoGradGuard no_grad;
  return total_norm(by_device(gradients_of(parameters)), norm_type);
}

torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& parameters, double max_norm, double norm_type) {
  return clip_gradients(gradients_of(parameters), max_norm, norm_type);
}

torch::Tensor clip_gradients(const std::vector<torch::Tensor>& grads, double max_norm, double norm_type) {
  ACCEL_CHECK_ARG(max_norm >= 0, "clip_grad_norm: max_norm is ", format_double(max_norm), ", expected >= 0");
  torch::NoGradGuard no_grad;
  const auto groups = by_device(grads);
  auto norm = total_norm(groups, norm_type);
  if (groups.empty()) return norm;
  // min(max_norm / (norm + 1e-6), 1): the same coefficient as PyTorch, kept
  // on the device so nothing waits for it.
  auto coef = torch::clamp_max(max_norm / (norm + 1e-6), 1.0);
  for (const auto& [key, grads] : groups) {
    const auto& g = grads.front();
    at::_foreach_mul_(grads, coef.to(g.device(), g.scalar_type()));
  }
  return norm;
}

}  // namespace accel
