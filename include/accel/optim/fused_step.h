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
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "accel/util/export.h"

namespace accel {

class ACCEL_API FusedStep {
 public:
  /// Whether `optimizer` is exactly torch::optim::Adam, AdamW, SGD or
  /// accel::FusedAdamW (whose step() is this). Another subclass may have
  /// changed what step() does, so it is left to its step().
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

  // --- CUDA graphs (graph/captured_step.h) ---------------------------------
  // A replayed graph re-runs the kernels it recorded with the arguments it
  // recorded: a learning rate passed as a number would stay the one of the
  // capture, and the host's step counts would not move.
  /// From now on each group's learning rate is read from a tensor on the
  /// parameters' device that only refresh_lr() writes.
  void use_device_lr() { device_lr_ = true; }
  /// Writes each group's current lr into its device tensor (call it before
  /// each run or replay, outside a capture).
  void refresh_lr(torch::optim::Optimizer& optimizer);
  /// A replay stepped the parameters of the last step once more on the
  /// device: advances their host step counts to match.
  void advance_host_steps(torch::optim::Optimizer& optimizer);

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
  // The lr tensor of group `group` on `like`'s device (made on first use).
  torch::Tensor& lr_tensor(size_t group, const torch::Tensor& like, double lr);

  std::unordered_map<const void*, StepCount> steps_;
  bool device_lr_ = false;
  std::map<std::pair<size_t, std::string>, torch::Tensor> lr_tensors_;
  std::vector<const void*> last_stepped_;  // parameters of the last Adam-family step
};

}  // namespace accel
