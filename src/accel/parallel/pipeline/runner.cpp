#include "accel/parallel/pipeline/runner.h"

#include <stdexcept>

#include <torch/autograd.h>

#include "accel/util/check.h"
#include "p2p.h"

namespace accel {

namespace {

using pipeline_detail::PendingSends;

// Tags per micro-batch: the activation's header and payload, then its gradient.
int activation_tag(int64_t m) { return static_cast<int>(3 * m); }
int gradient_tag(int64_t m) { return static_cast<int>(3 * m + 2); }

// The micro-batch count of `actions`, after checking that each micro-batch
// runs forward once and then backward once.
int64_t count_microbatches(const std::vector<PipelineAction>& actions) {
  std::vector<int> state;  // per micro-batch: 0 nothing yet, 1 forward done, 2 backward done
  for (const auto& a : actions) {
    ACCEL_CHECK_ARG(a.microbatch >= 0, "pipeline: action ", a.str(), " names a negative micro-batch");
    if (static_cast<size_t>(a.microbatch) >= state.size()) state.resize(static_cast<size_t>(a.microbatch) + 1, 0);
    int& s = state[static_cast<size_t>(a.microbatch)];
    if (a.kind == PipelineAction::Kind::forward) {
      ACCEL_CHECK_ARG(s == 0, "pipeline: action ", a.str(), " runs micro-batch ", a.microbatch,
                      " forward a second time in ", to_string(actions));
      s = 1;
    } else {
      ACCEL_CHECK_ARG(s == 1, "pipeline: action ", a.str(), " runs micro-batch ", a.microbatch,
                      s == 0 ? " backward before its forward" : " backward a second time", " in ", to_string(actions));
      s = 2;
    }
  }
  ACCEL_CHECK_ARG(!state.empty(), "pipeline: an empty action list");
  for (size_t m = 0; m < state.size(); ++m)
    ACCEL_CHECK_ARG(state[m] == 2, "pipeline: micro-batch ", m, " has no ", state[m] == 0 ? "forward" : "backward",
                    " in ", to_string(actions), " (expected each of 0..", state.size() - 1, " forward, then backward)");
  return static_cast<int64_t>(state.size());
}

// What a micro-batch leaves between its forward and its backward.
struct InFlight {
  torch::Tensor input;   // the received activation (a leaf that collects its gradient); first stage: undefined
  torch::Tensor output;  // sent on; last stage: loss / microbatches
};

}  // namespace

torch::Tensor run_pipeline(PipelineStage& stage, const std::vector<PipelineAction>& actions,
                           const std::vector<torch::Tensor>& inputs, const std::vector<torch::Tensor>& targets) {
  ACCEL_CHECK_ARG(stage.forward, "pipeline: stage ", stage.index, " has no forward");
  ACCEL_CHECK_ARG(!stage.is_last() || stage.loss, "pipeline: the last stage (", stage.index, ") has no loss");
  const int64_t micro = count_microbatches(actions);
  ACCEL_CHECK_ARG(!stage.is_first() || static_cast<int64_t>(inputs.size()) == micro, "pipeline: the first stage got ",
                  inputs.size(), " inputs for a schedule of ", micro, " micro-batches");
  ACCEL_CHECK_ARG(!stage.is_last() || static_cast<int64_t>(targets.size()) == micro, "pipeline: the last stage got ",
                  targets.size(), " targets for a schedule of ", micro, " micro-batches");
  const int prev = stage.index - 1, next = stage.index + 1;
  std::vector<InFlight> flight(static_cast<size_t>(micro));
  // Summed in float64 and sent as such: stages before the last do not know the loss's dtype.
  auto losses = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(stage.device));
  PendingSends sends;
  int64_t backwards = 0;
  for (const auto& a : actions) {
    auto& f = flight[static_cast<size_t>(a.microbatch)];
    if (a.kind == PipelineAction::Kind::forward) {
      torch::Tensor x;
      if (stage.is_first()) {
        x = inputs[static_cast<size_t>(a.microbatch)];
      } else {
        x = pipeline_detail::recv_with_header(stage.group, prev, activation_tag(a.microbatch), stage.device);
        // Only floating activations carry a gradient back.
        if (x.is_floating_point()) x.requires_grad_(true);
        f.input = x;
      }
      auto y = stage.forward(x);
      if (stage.is_last()) {
        auto loss = stage.loss(y, targets[static_cast<size_t>(a.microbatch)]);
        ACCEL_CHECK_ARG(loss.numel() == 1, "pipeline: the loss of micro-batch ", a.microbatch, " has shape ",
                        loss.sizes(), ", expected a scalar");
        losses += loss.detach().reshape({}).to(losses.options());
        // Each micro-batch's gradient is 1/m of its own, so the
        // accumulated gradient is that of the mean over the batch (and
        // over the runs of an accumulation, with loss_divisor).
        auto scaled = stage.loss_scale.defined() ? loss.reshape({}) * stage.loss_scale : loss.reshape({});
        f.output = scaled / (static_cast<double>(micro) * stage.loss_divisor);
      } else {
        pipeline_detail::send_with_header(sends, stage.group, y, next, activation_tag(a.microbatch));
        f.output = y;
      }
    } else {
      if (stage.before_backward) stage.before_backward(f.output, ++backwards == micro);
      if (stage.is_last()) {
        f.output.backward();
      } else if (f.output.is_floating_point()) {
        // The next stage sends a gradient for every floating activation
        // (zeros where it did not use it), so this receive is always matched.
        auto grad = pipeline_detail::recv_like(stage.group, f.output, next, gradient_tag(a.microbatch));
        if (f.output.requires_grad()) torch::autograd::backward({f.output}, {grad});
      }
      if (f.input.defined() && f.input.is_floating_point()) {
        auto g = f.input.grad();
        // An input the stage did not use has no gradient: zeros keep the
        // previous stage's receive matched.
        sends.send(stage.group, g.defined() ? g : torch::zeros_like(f.input), prev, gradient_tag(a.microbatch));
      }
      f = InFlight{};  // the micro-batch's activations are freed here
    }
  }
  sends.wait_all();
  auto mean = losses / static_cast<double>(micro);
  return broadcast(mean, stage.num_stages - 1, stage.group);
}

torch::Tensor run_pipeline(PipelineStage& stage, PipelineScheduleKind kind, int64_t microbatches,
                           const std::vector<torch::Tensor>& inputs, const std::vector<torch::Tensor>& targets) {
  return run_pipeline(stage, pipeline_schedule(kind, stage.index, stage.num_stages, microbatches), inputs, targets);
}

std::vector<torch::Tensor> split_microbatches(const torch::Tensor& batch, int64_t microbatches) {
  ACCEL_CHECK_ARG(microbatches >= 1, "split_microbatches: ", microbatches, " micro-batches, expected at least 1");
  ACCEL_CHECK_ARG(batch.dim() >= 1 && batch.size(0) % microbatches == 0, "split_microbatches: a batch of ",
                  batch.dim() >= 1 ? batch.size(0) : 0, " rows does not divide into ", microbatches,
                  " equal micro-batches");
  std::vector<torch::Tensor> out;
  const int64_t rows = batch.size(0) / microbatches;
  for (int64_t m = 0; m < microbatches; ++m) out.push_back(batch.narrow(0, m * rows, rows));
  return out;
}

}  // namespace accel
