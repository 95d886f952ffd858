#pragma once
// FusedAdamW: LibTorch's AdamW (same options, same per-parameter state, so
// schedulers, master weights and checkpoints treat it as AdamW), stepped by
// ATen's fused multi-tensor kernel (_fused_adamw_, the kernel behind
// PyTorch's `AdamW(fused=True)`) on CPU and CUDA. LibTorch's AdamW runs
// about ten small kernels per parameter; this runs one launch per group of
// parameters sharing a device and dtype, which is what makes small-kernel
// GPU steps fast.
//
//   auto opt = std::make_shared<accel::FusedAdamW>(model->parameters(),
//                                                  torch::optim::AdamWOptions(1e-3));
#include <unordered_map>
#include <vector>

#include <torch/optim/adamw.h>

namespace accel {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  /// Closures are supported as in AdamW; sparse gradients are not (error).
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  // The kernel takes each parameter's step count as a float tensor on the
  // parameter's device; AdamWParamState keeps the same count as an integer.
  std::unordered_map<void*, torch::Tensor> step_tensors_;
};

}  // namespace accel
