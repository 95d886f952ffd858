#include "accel/optim/grad_norm.h"

#include "accel/optim/clip_grad.h"
#include "accel/util/check.h"

#include <limits>
#include <stdexcept>
#include <string>

namespace accel {

namespace {
// torch::nn::utils::clip_grad_norm_'s reduction: per-tensor norms, then the norm of those.
torch::Tensor stacked_norm(const std::vector<torch::Tensor>& grads, double p, bool inf) {
  std::vector<torch::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(inf ? g.detach().abs().max() : g.detach().norm(p));
  if (norms.size() == 1) return norms[0];
  return inf ? torch::max(torch::stack(norms)) : torch::stack(norms).norm(p);
}
// 2-norm clipping with some gradients summarized (GradientSet::Summary):
// their squared norms are added to those of the tensors, and their scaling
// is left to their holders.
torch::Tensor clip_with_summaries(GradientSet& grads, double max_norm) {
  const auto& first = grads.summarized.front().sq_norm;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(first.device());
  auto squares = [&](const std::vector<torch::Tensor>& list, bool sharded) {
    auto sum = torch::zeros({1}, opts);
    if (!list.empty()) sum += stacked_norm(list, 2.0, false).to(opts).pow(2);
    for (const auto& s : grads.summarized)
      if (s.sharded == sharded) sum += s.sq_norm.to(opts);
    return sum;
  };
  auto total_sq = squares(grads.replicated, false);
  auto shard_sq = squares(grads.sharded, true);
  if (grads.group && grads.group->getSize() > 1) {
    std::vector<torch::Tensor> t{shard_sq};
    grads.group->allreduce(t)->wait();
  }
  const auto total = (total_sq + shard_sq).sqrt()[0];
  const auto coef = torch::clamp(max_norm / (total + 1e-6), std::nullopt, 1.0);
  for (auto* list : {&grads.replicated, &grads.sharded})
    for (auto& g : *list) g.detach().mul_(coef.to(g.device()));
  const float factor = coef.item<float>();
  for (auto& s : grads.summarized) s.scale_later(factor);
  return total;
}

}  // namespace

void GradientSet::expand_summaries() {
  for (auto& s : summarized)
    (s.sharded ? sharded : replicated)
        .insert((s.sharded ? sharded : replicated).end(), s.tensors.begin(), s.tensors.end());
  summarized.clear();
}

GradientSet gradients_of(const std::vector<torch::Tensor>& parameters,
                         const std::vector<const OptimizerTensors*>& holders) {
  GradientSet set;
  std::vector<bool> claimed(parameters.size(), false);
  for (const auto* h : holders)
    if (h) h->collect_gradients(parameters, claimed, set);
  for (size_t i = 0; i < parameters.size(); ++i)
    if (!claimed[i] && parameters[i].grad().defined()) set.replicated.push_back(parameters[i].grad());
  return set;
}

torch::Tensor clip_grad_norm_(GradientSet& grads, double max_norm, double norm_type) {
  if (!grads.summarized.empty()) {
    if (norm_type == 2.0) return clip_with_summaries(grads, max_norm);
    grads.expand_summaries();
  }
  if (!grads.group || grads.group->getSize() <= 1) {
    auto all = grads.replicated;
    all.insert(all.end(), grads.sharded.begin(), grads.sharded.end());
    return clip_gradients(all, max_norm, norm_type);
  }
  const bool inf = norm_type == std::numeric_limits<double>::infinity();
  torch::Tensor total;
  if (!grads.replicated.empty()) total = stacked_norm(grads.replicated, norm_type, inf);
  if (grads.group && grads.group->getSize() > 1) {
    ACCEL_CHECK_ARG(inf || norm_type > 0, "clip_grad_norm_: norm_type is ", std::to_string(norm_type),
                    ", expected > 0 or infinity with sharded gradients");
    // Every rank joins the all-reduce, with zero when it holds no shard.
    torch::Tensor local;
    if (!grads.sharded.empty()) {
      const auto n = stacked_norm(grads.sharded, norm_type, inf).to(torch::kFloat);
      local = (inf ? n : n.pow(norm_type)).reshape({1});
    } else {
      const auto device = total.defined() ? total.device() : torch::Device(torch::kCPU);
      local = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat).device(device));
    }
    std::vector<torch::Tensor> t{local};
    c10d::AllreduceOptions opts;
    opts.reduceOp = inf ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    grads.group->allreduce(t, opts)->wait();
    const auto shards = local[0];
    if (!total.defined()) {
      total = inf ? shards : shards.pow(1.0 / norm_type);
    } else {
      const auto rep = total.to(torch::kFloat);
      const auto s = shards.to(rep.device());
      total = inf ? torch::max(rep, s) : (rep.pow(norm_type) + s).pow(1.0 / norm_type);
    }
  }
  if (!total.defined()) return torch::zeros({}, torch::kFloat);
  const auto coef = torch::clamp(max_norm / (total + 1e-6), std::nullopt, 1.0);
  for (auto* list : {&grads.replicated, &grads.sharded})
    for (auto& g : *list) g.detach().mul_(coef.to(g.device()));
  return total;
}

torch::Tensor clip_grad_norm_(std::vector<GradientPart>& parts, double max_norm, double norm_type) {
  const bool inf = norm_type == std::numeric_limits<double>::infinity();
  ACCEL_CHECK_ARG(inf || norm_type > 0, "clip_grad_norm_: norm_type is ", std::to_string(norm_type),
                  ", expected > 0 or infinity");
  ACCEL_CHECK_ARG(max_norm >= 0, "clip_grad_norm_: max_norm is ", std::to_string(max_norm), ", expected >= 0");
  c10d::AllreduceOptions reduce;
  reduce.reduceOp = inf ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
  auto all_reduce = [&](torch::Tensor& t, const c10::intrusive_ptr<c10d::ProcessGroup>& group) {
    if (!group || group->getSize() <= 1) return;
    std::vector<torch::Tensor> one{t};
    group->allreduce(one, reduce)->wait();
  };
  // One float per part, on the device of the first gradient seen; every
  // rank reduces every group even when it holds nothing there (zero).
  torch::Device device(torch::kCPU);
  for (const auto& part : parts)
    for (const auto* list : {&part.grads.replicated, &part.grads.sharded})
      if (!list->empty()) device = list->front().device();
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto local = [&](const std::vector<torch::Tensor>& grads) {
    if (grads.empty()) return torch::zeros({1}, opts);
    const auto n = stacked_norm(grads, norm_type, inf).to(opts);
    return (inf ? n : n.pow(norm_type)).reshape({1});
  };
  auto total = torch::zeros({1}, opts);
  for (auto& part : parts) {
    part.grads.expand_summaries();  // their tensors, read as plain gradients
    auto sharded = local(part.grads.sharded);
    all_reduce(sharded, part.grads.group);
    auto sum = inf ? torch::max(local(part.grads.replicated), sharded) : local(part.grads.replicated) + sharded;
    all_reduce(sum, part.split_over);
    total = inf ? torch::max(total, sum) : total + sum;
  }
  const auto norm = (inf ? total : total.pow(1.0 / norm_type))[0];
  const auto coef = torch::clamp(max_norm / (norm + 1e-6), std::nullopt, 1.0);
  for (auto& part : parts)
    for (auto* list : {&part.grads.replicated, &part.grads.sharded})
      for (auto& g : *list) g.detach().mul_(coef.to(g.device()));
  return norm;
}

void clip_grad_value_(GradientSet& grads, double clip_value) {
  grads.expand_summaries();
  for (auto* list : {&grads.replicated, &grads.sharded})
    for (auto& g : *list) g.detach().clamp_(-clip_value, clip_value);
}

}  // namespace accel
