#pragma once
// CPU Adam: the Adam/AdamW update of ZeRO-Offload (DeepSpeed's CPU Adam
// idea) over flat fp32 host arrays. One pass over memory per step: each
// element's parameter, moments and gradient are read once and written once
// (plus, optionally, a bf16/fp16 copy of the new parameter for the device),
// the range cut across the ATen intra-op threads, the loop vectorised for
// the best of AVX-512, AVX2 or baseline x86-64 found at run time.
//
// The arithmetic is LibTorch's (torch/optim/adamw.h, adam.h) in fp32:
//   AdamW: p *= 1 - lr*wd                  Adam: g += wd*p
//   m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
//   [amsgrad: v_max = max(v_max, v), used for v below]
//   p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
// so it equals torch::optim::AdamW / Adam up to float rounding (the
// compiler may fuse multiply-adds). Results do not depend on the number of
// threads: every element is computed alone.
//
//   accel::CpuAdamOptions o(1e-3);
//   accel::cpu_adam_step(o, /*step=*/1, {param, grad, exp_avg, exp_avg_sq});
//
// CpuAdamW / CpuAdam below are the same update as drop-in torch::optim
// optimizers for fp32 CPU parameters (same options, state and checkpoints).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <torch/arg.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API CpuAdamOptions {
  using Betas = std::tuple<double, double>;
  CpuAdamOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: implicit as in AdamWOptions
  TORCH_ARG(double, lr);
  TORCH_ARG(Betas, betas) = std::make_tuple(0.9, 0.999);
  TORCH_ARG(double, eps) = 1e-8;
  /// AdamW's default. With adamw false, Adam's L2 term added to the gradient.
  TORCH_ARG(double, weight_decay) = 1e-2;
  /// Decoupled weight decay (AdamW) or L2 in the gradient (Adam).
  TORCH_ARG(bool, adamw) = true;
  TORCH_ARG(bool, amsgrad) = false;

 public:
  /// From LibTorch's options (the same defaults and meaning).
  static CpuAdamOptions from(const torch::optim::AdamWOptions& o);
  static CpuAdamOptions from(const torch::optim::AdamOptions& o);
  /// Throws std::invalid_argument naming a bad value (LibTorch's ranges).
  void check() const;
};

/// One flat slice. All defined tensors are contiguous CPU tensors of the
/// same number of elements; param, exp_avg, exp_avg_sq (and max_exp_avg_sq
/// under amsgrad) fp32; grad fp32 or bf16; param_copy undefined, bf16 or
/// fp16 (written with the updated parameter, rounded to nearest even).
struct ACCEL_API CpuAdamSlice {
  torch::Tensor param;
  torch::Tensor grad;
  torch::Tensor exp_avg;
  torch::Tensor exp_avg_sq;
  torch::Tensor max_exp_avg_sq = {};
  torch::Tensor param_copy = {};
  /// The gradient is multiplied by this first: a clipping factor left to
  /// the update, which then equals clipping in place and stepping (the
  /// same float product) without another pass over the gradients.
  float grad_scale = 1.f;
};

/// Applies step number `step` (1 for the first update) to the slice in
/// place. Throws std::invalid_argument naming a tensor of the wrong device,
/// dtype, size or layout.
ACCEL_API void cpu_adam_step(const CpuAdamOptions& options, int64_t step, const CpuAdamSlice& slice);

/// Steps a torch::optim::Adam or AdamW (or a subclass, e.g. FusedAdamW) on
/// its own per-parameter state with the CPU Adam update, as its step() would
/// (same state, step counts and checkpoints): for an engine that keeps the
/// user's optimizer over fp32 CPU slices (ZeRO-Offload). Returns false,
/// changing nothing, for any other optimizer type; throws like CpuAdamW.
ACCEL_API bool cpu_adam_step(torch::optim::Optimizer& optimizer);
/// The same, `adjust(parameter, slice)` called on each slice before it is
/// stepped, to set its param_copy (the bf16/fp16 copy an offloaded model
/// reads, parallel/fsdp) or grad_scale.
using CpuAdamAdjust = std::function<void(const torch::Tensor& param, CpuAdamSlice& slice)>;
ACCEL_API bool cpu_adam_step(torch::optim::Optimizer& optimizer, const CpuAdamAdjust& adjust);

/// One parameter's update as cpu_adam_step(optimizer, adjust) runs it,
/// planned but not run: its state found or made, its step counted, its
/// group's options read. For a caller that runs the arithmetic later, on
/// another thread or in another order (parallel/fsdp overlaps it with the
/// next forward): cpu_adam_step(task.options, task.step, task.slice).
struct ACCEL_API CpuAdamTask {
  torch::Tensor param;  // the optimizer's parameter the slice updates
  CpuAdamOptions options;
  int64_t step = 1;
  CpuAdamSlice slice;
};
/// The tasks of one step of a torch::optim::Adam or AdamW (or subclass),
/// parameters without a gradient left out; nullopt, changing nothing, for
/// any other optimizer. Throws like cpu_adam_step(optimizer).
ACCEL_API std::optional<std::vector<CpuAdamTask>> plan_cpu_adam_step(torch::optim::Optimizer& optimizer,
                                                                     const CpuAdamAdjust& adjust = {});

/// The instruction set the update runs with here: "avx512", "avx2" or "baseline".
ACCEL_API std::string cpu_adam_isa();

/// torch::optim::AdamW whose step() runs the CPU Adam update (one call per
/// parameter). Parameters must be contiguous fp32 on the CPU with dense fp32
/// or bf16 gradients; others throw naming the parameter's index.
class ACCEL_API CpuAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

/// torch::optim::Adam (L2 weight decay) whose step() runs the CPU Adam update.
class ACCEL_API CpuAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace accel
