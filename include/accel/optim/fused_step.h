#pragma once
// FusedStep: steps LibTorch's own Adam, AdamW and SGD with ATen's fused
// multi-tensor kernels (_fused_adam_, _fused_adamw_, _fused_sgd_: the
// kernels behind PyTorch's `fused=True`), reading and writing the
// optimizer's own per-parameter state. LibTorch's step() runs several small
// kernels per parameter tensor; these run one launch per group of
// parameters sharing a device and dtype. The optimizer object is untouched
// otherwise: its options, state, schedulers and checkpoints work as before,
// and stepping it with step() afterwards continues the same run.
//
// Prepared optimizers use it on CUDA (AcceleratorOptions::fused_optimizer_step);
// FusedAdamW uses it on every device.
#include <cstdint>
#include <unordered_map>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

namespace accel {

class FusedStep {
 public:
  /// Whether `optimizer` is exactly torch::optim::Adam, AdamW or SGD. A
  /// subclass may have changed what step() does, so it is left to its step().
  static bool supports(const torch::optim::Optimizer& optimizer);

  /// Steps a supported optimizer whose parameters with gradients are all
  /// dense CUDA tensors and returns true; otherwise changes nothing and
  /// returns false (the caller calls optimizer.step()).
  bool step_on_cuda(torch::optim::Optimizer& optimizer);

  /// One update of each, on any device the kernels support (CPU and CUDA).
  /// Sparse gradients are refused with std::invalid_argument.
  void adam(torch::optim::Adam& optimizer);
  void adamw(torch::optim::AdamW& optimizer);
  void sgd(torch::optim::SGD& optimizer);

 private:
  // The Adam kernels take each parameter's step count as a float tensor on
  // its device; the optimizer's state keeps the count as an integer. The
  // tensor is remade when the integer moved without us (state loaded).
  struct StepCount {
    torch::Tensor tensor;
    int64_t value = -1;
  };
  template <typename Options, typename State>
  void adam_family(torch::optim::Optimizer& optimizer, bool decoupled_weight_decay);
  torch::Tensor& step_tensor(const torch::Tensor& param, int64_t count);

  std::unordered_map<const void*, StepCount> steps_;
};

}  // namespace accel
