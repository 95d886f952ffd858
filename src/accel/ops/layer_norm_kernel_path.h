#pragma once
// What accel::add_layer_norm (accel/ops/add_layer_norm.h) and
// accel::layer_norm (accel/ops/layer_norm.h) share: the checks of x, weight,
// bias and the options, the type of the normalised output, the ATen
// reference, and the CUDA-kernel path as one autograd node (with a residual
// add or without). Private to src/accel/ops.
#include <optional>

#include <torch/types.h>

namespace accel::detail {

/// Refuses (std::invalid_argument, message starting with `who`) an x that is
/// not [..., C] with C >= 1, a weight or bias not [C] or undefined, eps < 0,
/// an output_dtype that is not a floating-point type.
void check_layer_norm_args(const char* who, const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& bias, double eps, std::optional<c10::ScalarType> output_dtype);

/// The ATen reference: layer_norm over the last dimension, then cast to
/// output_dtype when set (under autocast layer_norm's float32 result).
torch::Tensor aten_layer_norm(const torch::Tensor& sum, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps, std::optional<c10::ScalarType> output_dtype);

struct KernelLayerNorm {
  torch::Tensor sum;     // x + residual; undefined without a residual
  torch::Tensor normed;  // layer_norm(sum), in output_dtype or ATen's type
};

/// accel's CUDA kernels on layer_norm(x + residual) (residual undefined: of
/// x alone), differentiable, when the build has them, they are enabled and
/// take these tensors; std::nullopt otherwise (the caller then runs the ATen
/// composition). x holds the sum's type: the caller puts the wider operand
/// first. Values are those of the ATen composition up to float32 rounding.
std::optional<KernelLayerNorm> kernel_layer_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                 const torch::Tensor& weight, const torch::Tensor& bias, double eps,
                                                 std::optional<c10::ScalarType> output_dtype);

}  // namespace accel::detail
