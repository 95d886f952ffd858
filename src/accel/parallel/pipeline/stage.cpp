#include "accel/parallel/pipeline/stage.h"

#include <algorithm>
#include <stdexcept>

#include "accel/parallel/tensor/parallelize.h"
#include "accel/util/check.h"
#include "p2p.h"

namespace accel {

PipelineStage::PipelineStage(ProcessGroupPtr pipeline_group) : group(std::move(pipeline_group)) {
  ACCEL_CHECK_ARG(group, "PipelineStage: no process group (expected the mesh's \"pp\" group)");
  index = group->getRank();
  num_stages = group->getSize();
}

namespace {

void check_tied(const PipelineStage& stage) {
  ACCEL_CHECK_ARG(stage.tied_stage >= 0 && stage.tied_stage < stage.num_stages && stage.tied_stage != stage.index,
                  "pipeline stage ", stage.index, ": tied_stage = ", stage.tied_stage,
                  ", expected another stage in [0, ", stage.num_stages, ")");
  for (const auto& t : stage.tied)
    ACCEL_CHECK_ARG(std::any_of(stage.parameters.begin(), stage.parameters.end(),
                                [&](const torch::Tensor& p) { return p.is_same(t); }),
                    "pipeline stage ", stage.index, ": a tied tensor of shape ", t.sizes(),
                    " is not among the stage's parameters");
}

bool is_tied(const PipelineStage& stage, const torch::Tensor& p) {
  return std::any_of(stage.tied.begin(), stage.tied.end(), [&](const torch::Tensor& t) { return t.is_same(p); });
}

}  // namespace

void sum_tied_gradients(PipelineStage& stage) {
  if (stage.tied.empty()) return;
  check_tied(stage);
  // Both stages send first and receive second: the sends do not wait for
  // the peer's receive, so neither blocks the other.
  pipeline_detail::PendingSends sends;
  std::vector<torch::Tensor> mine;
  for (size_t i = 0; i < stage.tied.size(); ++i) {
    auto& p = stage.tied[i];
    auto g = p.grad().defined() ? p.grad().detach().clone() : torch::zeros_like(p);
    sends.send(stage.group, g, stage.tied_stage, static_cast<int>(i));
    mine.push_back(g);
  }
  for (size_t i = 0; i < stage.tied.size(); ++i) {
    auto& p = stage.tied[i];
    auto theirs = pipeline_detail::recv_like(stage.group, mine[i], stage.tied_stage, static_cast<int>(i));
    // mine + theirs on one stage is theirs + mine on the other: the same bits.
    auto sum = mine[i] + theirs;
    if (p.grad().defined()) {
      p.mutable_grad().detach().copy_(sum);
    } else {
      p.mutable_grad() = sum;
    }
  }
  sends.wait_all();
  stage.summed_tied.clear();
  for (auto& p : stage.tied) stage.summed_tied.emplace_back(p.grad().getIntrusivePtr(), p.grad()._version());
}

bool tied_gradients_hold_a_sum(const PipelineStage& stage) {
  if (stage.summed_tied.size() != stage.tied.size()) return false;
  for (size_t i = 0; i < stage.tied.size(); ++i) {
    const auto& grad = stage.tied[i].grad();
    const auto& [written, version] = stage.summed_tied[i];
    // zero_grad sets the gradient to none (another tensor next time) or
    // zeroes it in place (a new version).
    auto held = written.lock();
    if (!grad.defined() || held.get() != grad.unsafeGetTensorImpl() || grad._version() != version) return false;
  }
  return true;
}

StageGradients stage_gradients(const PipelineStage& stage) {
  if (!stage.tied.empty()) check_tied(stage);
  // The earlier stage counts the tied copies; equal gradients on both.
  const bool later = !stage.tied.empty() && stage.index > stage.tied_stage;
  std::vector<torch::Tensor> counted;
  StageGradients out;
  for (const auto& p : stage.parameters) {
    if (later && is_tied(stage, p)) {
      if (p.grad().defined()) out.uncounted.push_back(p.grad());
    } else {
      counted.push_back(p);
    }
  }
  out.counted = tensor_parallel_gradients(counted);
  return out;
}

}  // namespace accel
