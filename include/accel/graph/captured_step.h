#pragma once
// CapturedStep: a whole training step (forward, backward, clipping,
// optimizer step) recorded once as a CUDA graph and replayed each step: the
// GPU runs it without the host launching ~thousands of kernels one by one,
// the C++ answer to torch.compile's "reduce-overhead" mode.
//
//   auto step = accelerator.capture_step([&](const std::vector<torch::Tensor>& in) {
//     auto loss = loss_fn(model(in[0]), in[1]);
//     accelerator.backward(loss);
//     accelerator.clip_grad_norm_(net->parameters(), 1.0);
//     optimizer->step();
//     optimizer->zero_grad();
//     return std::vector<torch::Tensor>{loss};
//   });
//   for (...) { auto out = step({x, y}); scheduler->step(); }   // out[0]: the loss
//
// How: the first `warmup_steps` calls run the function eagerly on a side
// stream (allocations settle, optimizer state exists); the next call
// records it into a graph whose memory comes from a private pool; every
// later call copies the inputs into the graph's static input tensors and
// replays. Outputs are the graph's static tensors: valid until the next
// call (clone them to keep them).
//
// What a replay cannot see, and how it is handled:
//   - the learning rate: prepared optimizers read it from a device tensor
//     refreshed before each replay, so schedulers work as usual (step them
//     outside the function);
//   - the optimizers' step counts: advanced on the device by the graph and
//     on the host after each replay, so checkpoints stay right;
//   - anything else the function does on the host (reading a tensor's
//     value, branching on it, printing) happens once, at capture.
// Refused with an error that says why: fp16 loss scaling (it decides on the
// host), an optimizer not stepped by the fused kernels, gradient
// accumulation (> 1), DDP (not yet verified on two GPUs), inputs whose
// shape, dtype or device differ from the first call's.
//
// Without CUDA, or with AcceleratorOptions::cuda_graph off, the same
// object simply calls the function: the program does not change.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "accel/gradient_state.h"
#include "accel/optim/accelerated_optimizer.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API CaptureOptions {
  /// Eager calls before capture (at least 1: optimizer state must exist).
  TORCH_ARG(int64_t, warmup_steps) = 3;
  /// For Accelerator::capture_step: whether to record this step, in place
  /// of AcceleratorOptions::cuda_graph (nullopt: that option decides). A
  /// program that knows its step is graph-safe turns capture on where the
  /// accelerator allows it, and leaves it off elsewhere.
  TORCH_ARG(std::optional<bool>, cuda_graph) = std::nullopt;
};

class ACCEL_API CapturedStep {
 public:
  using Function = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>& inputs)>;

  /// `capture` false: every call runs `fn` eagerly. The optimizers are those
  /// the function steps (each is checked when capture begins).
  CapturedStep(Function fn, std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers,
               std::shared_ptr<GradientState> gradient_state, bool capture, CaptureOptions options = {});
  ~CapturedStep();
  CapturedStep(CapturedStep&&) noexcept;
  CapturedStep& operator=(CapturedStep&&) noexcept;

  /// One training step on `inputs`; returns the function's outputs.
  std::vector<torch::Tensor> operator()(const std::vector<torch::Tensor>& inputs);

  /// A graph has been recorded and calls now replay it.
  bool captured() const;
  /// Calls so far (eager, capturing and replays).
  int64_t calls() const { return calls_; }

 private:
  struct Graph;  // the CUDA graph and its static tensors (CUDA builds only)

  std::vector<torch::Tensor> run_eager(const std::vector<torch::Tensor>& inputs);
  std::vector<torch::Tensor> run_captured(const std::vector<torch::Tensor>& inputs);

  Function fn_;
  std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers_;
  std::shared_ptr<GradientState> gradient_state_;
  bool capture_;
  CaptureOptions options_;
  int64_t calls_ = 0;
  std::unique_ptr<Graph> graph_;
};

}  // namespace accel
