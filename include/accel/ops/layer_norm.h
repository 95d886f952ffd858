#pragma once
// layer_norm: LayerNorm over the last dimension, add_layer_norm's kernels
// without the residual add, for the LayerNorms that do not follow one (a
// pre-LayerNorm block's first, a transformer's final):
//
//   auto h = accel::layer_norm(x, ln_1->weight, ln_1->bias,
//                              accel::LayerNormOptions().eps(ln_1->options.eps()));
//
// On CUDA, where accel's kernels are built (accel/ops/cuda_kernels.h), the
// forward and the backward are one kernel each (accel/ops/add_layer_norm.h
// says what they do). Elsewhere (CPU, unsupported types, fused_kernel(false),
// ACCEL_FUSED_KERNELS=0: accel/ops/fused_kernels.h) it is exactly
// `torch::layer_norm(x, {C}, weight, bias, eps)`, then `.to(output_dtype)`
// when that is set: the reference the kernels are tested against.
//
// The output has ATen's type (x's, or float32 under autocast) unless
// output_dtype is set. Under autocast, where the output feeds a Linear
// (which casts it to bf16), output_dtype = bf16 gives the values of that
// cast from one kernel: it computes in float32 and rounds once.
#include <optional>

#include <torch/arg.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API LayerNormOptions {
  /// Added to the variance, as torch::nn::LayerNormOptions::eps.
  TORCH_ARG(double, eps) = 1e-5;
  /// The output's type; unset: ATen's. As AddLayerNormOptions::output_dtype:
  /// set it to autocast's type when the output feeds a Linear under
  /// autocast. A floating-point type.
  TORCH_ARG(std::optional<c10::ScalarType>, output_dtype) = std::nullopt;
  /// Use accel's CUDA kernels where they are built and take the tensors;
  /// false: the ATen composition on every device.
  TORCH_ARG(bool, fused_kernel) = true;
};

/// x [..., C]; weight and bias [C] or undefined (no scale / no shift).
/// Differentiable in x, weight and bias. Throws std::invalid_argument
/// naming a shape or option that does not fit.
ACCEL_API torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                   const LayerNormOptions& options = {});

}  // namespace accel
