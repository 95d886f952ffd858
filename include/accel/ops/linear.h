#pragma once
// linear: x @ weight^T + bias, the values of at::linear (what
// torch::nn::Linear computes), with the bias gradient made inside the
// weight-gradient GEMM.
//
//   auto y = accel::linear(x, fc->weight, fc->bias);   // x [..., K] -> [..., M]
//
// Autograd's backward of at::linear runs a GEMM for the weight gradient and
// then a separate reduction over every row of the output gradient for the
// bias gradient, reading that whole gradient a second time (in GPT-2 124M at
// 16 x 1024 tokens: 49 reductions, 1.8 ms of a 40 ms step on an H200). On
// CUDA, where accel's kernels are built (accel/ops/cuda_kernels.h), the
// backward here asks cuBLASLt for the weight gradient with its bias-gradient
// epilogue instead: one pass. The forward is at::linear itself (whose bias
// already rides in the GEMM).
//
// Elsewhere (CPU, no bias, types or sizes cuBLASLt's epilogue does not take:
// rows of x or of the output not a multiple of 8 elements; fused_kernel(false),
// ACCEL_FUSED_KERNELS=0: accel/ops/fused_kernels.h) it is exactly at::linear.
// Under autocast the inputs are cast as at::linear's are (the same cached
// weight casts), and the result has autocast's type.
#include <torch/arg.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API LinearOptions {
  /// Use cuBLASLt's bias-gradient epilogue where it applies; false: at::linear.
  TORCH_ARG(bool, fused_kernel) = true;
};

/// x [..., K], weight [M, K], bias [M] or undefined. Shapes that do not fit
/// are refused as at::linear refuses them.
ACCEL_API torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {},
                               const LinearOptions& options = {});

}  // namespace accel
