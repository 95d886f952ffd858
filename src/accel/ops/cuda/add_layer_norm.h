#pragma once
// Tensor front of the residual-add + LayerNorm kernels
// (add_layer_norm_kernel.h), built only with ACCEL_CUDA_KERNELS
// (accel/ops/cuda_kernels.h). accel::add_layer_norm (accel/ops/add_layer_norm.h)
// calls them on CUDA; the tests call them directly.
#include <cstdint>

#include <torch/types.h>

namespace accel::kernels {

/// The widest row the backward kernel takes (its per-block column sums live
/// in shared memory: 2 x 4 bytes a column).
constexpr int64_t kAddLayerNormMaxCols = 16384;

/// Whether the kernels take x + r normalised with weight / bias (each may
/// be undefined) into `out_dtype`: CUDA tensors on one device, the types
/// of add_layer_norm_kernel.h, x and r of one shape, at most
/// kAddLayerNormMaxCols columns. An undefined r: x alone normalised (a
/// plain LayerNorm).
bool add_layer_norm_supports(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& weight,
                             const torch::Tensor& bias, c10::ScalarType out_dtype);

struct AddLayerNormForward {
  torch::Tensor sum;   // x + r, x's dtype and shape; without r, x itself (contiguous)
  torch::Tensor out;   // layer_norm(sum), out_dtype
  torch::Tensor mean;  // [rows] float32
  torch::Tensor rstd;  // [rows] float32
};

/// x, r [..., C] (made contiguous), weight / bias [C] or undefined; r
/// undefined: no add (no sum is written; the backward takes `sum` = x).
AddLayerNormForward add_layer_norm_forward(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& weight,
                                           const torch::Tensor& bias, double eps, c10::ScalarType out_dtype);

struct AddLayerNormBackward {
  torch::Tensor grad_sum;     // d loss / d (x + r), the sum's dtype and shape
  torch::Tensor grad_weight;  // [C] float32, or undefined unless asked for
  torch::Tensor grad_bias;    // [C] float32, or undefined unless asked for
};

/// grad_out: the gradient of `out`; grad_sum_in: the gradient reaching
/// `sum` from elsewhere (the residual stream), or undefined.
AddLayerNormBackward add_layer_norm_backward(const torch::Tensor& grad_out, const torch::Tensor& grad_sum_in,
                                             const torch::Tensor& sum, const torch::Tensor& mean,
                                             const torch::Tensor& rstd, const torch::Tensor& weight,
                                             bool weight_and_bias_grads);

}  // namespace accel::kernels
