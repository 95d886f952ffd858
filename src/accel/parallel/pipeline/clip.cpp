#include "accel/parallel/pipeline/clip.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel {

namespace {

// sum |g|^p over `grads` (max |g| for the inf-norm), as a [1] float tensor.
torch::Tensor local_power_sum(const std::vector<torch::Tensor>& grads, double p, bool inf,
                              const torch::TensorOptions& opts) {
  auto total = torch::zeros({1}, opts);
  for (const auto& g : grads) {
    const auto d = g.detach();
    if (inf) {
      total = torch::maximum(total, d.abs().max().to(opts).reshape({1}));
    } else {
      total += d.norm(p).to(opts).pow(p).reshape({1});
    }
  }
  return total;
}

void all_reduce(torch::Tensor& t, bool inf, const ProcessGroupPtr& group) {
  if (!group || group->getSize() <= 1) return;
  std::vector<torch::Tensor> ts{t};
  c10d::AllreduceOptions opts;
  opts.reduceOp = inf ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
  group->allreduce(ts, opts)->wait();
}

}  // namespace

torch::Tensor clip_grad_norm_across_stages(std::vector<GradientPart>& parts, GradientSet& uncounted,
                                           const ProcessGroupPtr& pp_group, double max_norm, double norm_type) {
  ACCEL_CHECK_ARG(max_norm >= 0, "clip_grad_norm_across_stages: max_norm is ", format_double(max_norm),
                  ", expected >= 0");
  const bool inf = std::isinf(norm_type) && norm_type > 0;
  ACCEL_CHECK_ARG(inf || norm_type > 0, "clip_grad_norm_across_stages: norm_type is ", format_double(norm_type),
                  ", expected > 0 or infinity");
  uncounted.expand_summaries();
  torch::Device device = torch::kCPU;
  for (auto& part : parts) {
    part.grads.expand_summaries();
    for (auto* list : {&part.grads.replicated, &part.grads.sharded})
      if (!list->empty()) device = list->front().device();
  }
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  // Each part: its pieces over their group, plus the replicated ones, then
  // over the ranks it is split across; the parts add up to the stage's
  // sum, which adds up over the pipeline. Every rank joins every reduction.
  auto stage = torch::zeros({1}, opts);
  for (auto& part : parts) {
    auto shards = local_power_sum(part.grads.sharded, norm_type, inf, opts);
    all_reduce(shards, inf, part.grads.group);
    const auto replicated = local_power_sum(part.grads.replicated, norm_type, inf, opts);
    auto sum = inf ? torch::maximum(shards, replicated) : shards + replicated;
    all_reduce(sum, inf, part.split_over);
    stage = inf ? torch::maximum(stage, sum) : stage + sum;
  }
  all_reduce(stage, inf, pp_group);
  const auto total = (inf ? stage : stage.pow(1.0 / norm_type))[0];
  const auto coef = torch::clamp(max_norm / (total + 1e-6), std::nullopt, 1.0);
  for (auto& part : parts)
    for (auto* list : {&part.grads.replicated, &part.grads.sharded})
      for (auto& g : *list) g.detach().mul_(coef.to(g.device()));
  for (auto* list : {&uncounted.replicated, &uncounted.sharded})
    for (auto& g : *list) g.detach().mul_(coef.to(g.device()));
  return total;
}

torch::Tensor clip_grad_norm_across_stages(StageGradients& grads, const ProcessGroupPtr& pp_group, double max_norm,
                                           double norm_type) {
  ACCEL_CHECK_ARG(max_norm >= 0, "clip_grad_norm_across_stages: max_norm is ", format_double(max_norm),
                  ", expected >= 0");
  const bool inf = std::isinf(norm_type) && norm_type > 0;
  ACCEL_CHECK_ARG(inf || norm_type > 0, "clip_grad_norm_across_stages: norm_type is ", format_double(norm_type),
                  ", expected > 0 or infinity");
  auto& set = grads.counted;
  set.expand_summaries();
  torch::Device device = torch::kCPU;
  for (auto* list : {&set.replicated, &set.sharded, &grads.uncounted})
    if (!list->empty()) device = list->front().device();
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  // The tp slices' sum over the tp group, then the replicated part once,
  // then the stages' sums over the pipeline: every rank joins each
  // all-reduce of its groups, with zero where it holds nothing.
  auto shards = local_power_sum(set.sharded, norm_type, inf, opts);
  all_reduce(shards, inf, set.group);
  const auto replicated = local_power_sum(set.replicated, norm_type, inf, opts);
  auto stage = inf ? torch::maximum(shards, replicated) : shards + replicated;
  all_reduce(stage, inf, pp_group);
  const auto total = (inf ? stage : stage.pow(1.0 / norm_type))[0];
  const auto coef = torch::clamp(max_norm / (total + 1e-6), std::nullopt, 1.0);
  for (auto* list : {&set.replicated, &set.sharded, &grads.uncounted})
    for (auto& g : *list) g.detach().mul_(coef.to(g.device()));
  return total;
}

}  // namespace accel
