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
#include <torch/optim/adamw.h>

#include "accel/optim/fused_step.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  /// Closures are supported as in AdamW; sparse gradients are not (error).
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  FusedStep fused_;
};

}  // namespace accel
