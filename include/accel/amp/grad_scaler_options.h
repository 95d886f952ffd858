#pragma once
// GradScalerOptions: fp16's dynamic loss scaling (amp/grad_scaler.h tells
// the rule), PyTorch's torch.amp.GradScaler arguments and DeepSpeed's two
// more, LibTorch style:
//   accel::GradScalerOptions().init_scale(1024).growth_interval(100)
// Apart from grad_scaler.h, which pulls in c10d's and the optimizer's
// headers, so that AcceleratorOptions can hold one cheaply.
#include <cstdint>

#include <torch/arg.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API ACCEL_API GradScalerOptions {
  /// The scale before any update. > 0.
  TORCH_ARG(double, init_scale) = 65536.0;
  /// Scale multiplier after growth_interval steps in a row without inf/nan. > 1.
  TORCH_ARG(double, growth_factor) = 2.0;
  /// Scale multiplier after a step with inf/nan. In (0, 1).
  TORCH_ARG(double, backoff_factor) = 0.5;
  /// Steps without inf/nan before the scale grows. > 0.
  TORCH_ARG(int64_t, growth_interval) = 2000;
  /// DeepSpeed's hysteresis: the scale backs off at the hysteresis-th
  /// overflow since it last grew (or since the start), each earlier one
  /// only skipping its step, then at every overflow until it grows again,
  /// which restores the count (DeepSpeed's DynamicLossScaler with
  /// consecutive_hysteresis false). Any overflow restarts the growth count.
  /// 1: back off at every overflow, as PyTorch does. >= 1.
  TORCH_ARG(int64_t, hysteresis) = 1;
  /// The backoff never takes the scale below this (DeepSpeed's
  /// min_loss_scale). 0: no floor, as PyTorch. >= 0.
  TORCH_ARG(double, min_scale) = 0.0;
  /// Off: scale() is the identity, step() just steps, update() does nothing
  /// (so a training loop can always go through the scaler).
  TORCH_ARG(bool, enabled) = true;
};

}  // namespace accel
