#pragma once
// add_layer_norm: a residual add followed by a LayerNorm, the pair a
// pre-LayerNorm transformer block runs between its attention and its MLP:
//
//   auto [x2, h] = accel::add_layer_norm(x, attn_out, ln_2->weight, ln_2->bias);
//   //   x2 = x + attn_out                    (the new residual stream)
//   //   h  = layer_norm(x2, {C}, ln_2->weight, ln_2->bias, eps)
//   return x2 + mlp(h);
//
// On CUDA, where accel's kernels are built (accel/ops/cuda_kernels.h), the
// forward is one kernel (the sum, its statistics and the normalised output
// in one pass over each row) and so is the backward (the gradient of the
// sum, the LayerNorm gradient plus the gradient reaching the sum from the
// residual stream, with the weight and bias gradients summed per block);
// ATen would run an add, LayerNorm's forward, and in backward LayerNorm's
// two kernels and another add. Elsewhere (CPU, unsupported types,
// fused_kernel(false), ACCEL_FUSED_KERNELS=0: accel/ops/fused_kernels.h) it
// is exactly `x + residual` then `torch::layer_norm`, the reference the
// kernels are tested against.
//
// Types are those of the ATen composition: the sum has the promoted type of
// x and residual; the output has the sum's type, or float32 under autocast
// (LayerNorm is one of autocast's float32 ops), or output_dtype when set.
// The kernels take a float32 or bfloat16 sum (a float32 stream may add a
// bf16 residual), float32 or the sum's type for weight and bias, a float32
// or bfloat16 output, and rows of up to 16384.
//
// A LayerNorm without the add is accel::layer_norm (accel/ops/layer_norm.h).
#include <optional>

#include <torch/arg.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API AddLayerNormOptions {
  /// Added to the variance, as torch::nn::LayerNormOptions::eps.
  TORCH_ARG(double, eps) = 1e-5;
  /// The type of `normed`; unset: ATen's (above). Set it to autocast's
  /// type (bf16) when `normed` feeds a Linear under autocast: the Linear
  /// casts it to bf16 anyway, so the kernel writes bf16 directly (it
  /// computes in float32 and rounds once, the cast's values) and its
  /// backward reads the bf16 gradient (the cast's backward only widens it):
  /// half the bytes each way and no cast kernels. Elsewhere exactly
  /// `layer_norm(...).to(output_dtype)`. A floating-point type.
  TORCH_ARG(std::optional<c10::ScalarType>, output_dtype) = std::nullopt;
  /// Use accel's CUDA kernels where they are built and take the tensors;
  /// false: the ATen composition on every device.
  TORCH_ARG(bool, fused_kernel) = true;
};

struct AddLayerNormOutput {
  torch::Tensor sum;     // x + residual
  torch::Tensor normed;  // layer_norm(sum)
};

/// x and residual [..., C] of one shape; weight and bias [C] or undefined
/// (no scale / no shift). Both outputs are differentiable. Throws
/// std::invalid_argument naming a shape or option that does not fit.
ACCEL_API AddLayerNormOutput add_layer_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                            const torch::Tensor& weight, const torch::Tensor& bias,
                                            const AddLayerNormOptions& options = {});

}  // namespace accel
