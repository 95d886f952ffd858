#pragma once
// linear_gelu_linear: a transformer's MLP, linear -> GELU (tanh) -> linear,
// as one op:
//
//   auto y = accel::linear_gelu_linear(x, c_fc->weight, c_fc->bias, c_proj->weight, c_proj->bias);
//   //     = at::linear(torch::gelu(at::linear(x, fc_w, fc_b), "tanh"), proj_w, proj_b)
//
// ATen runs the GELU as its own element-wise kernel each way over the
// [tokens, 4C] hidden activations, and each bias gradient as a reduction
// over a whole gradient. On CUDA, where accel's kernels are built
// (accel/ops/cuda_kernels.h), they ride in the GEMMs' epilogues (cuBLASLt):
//   forward   hidden = gelu(x @ fc_w^T + fc_b) in the first GEMM, which also
//             keeps GELU's input for the backward (GELU_AUX_BIAS);
//   backward  proj_w's gradient with proj_b's in one GEMM (BGRADB), and
//             fc_w's with fc_b's likewise; GELU's derivative is ATen's
//             element-wise kernel (cuBLASLt's DGELU_BGRAD epilogue ran as a
//             separate kernel three times slower on an H200).
// The saved activations are those of the ATen composition (GELU's input and
// output). The values differ from it within the GEMM type's rounding: the
// GEMM applies GELU to its float32 accumulator, where ATen first rounds the
// linear's output to the GEMM type.
//
// Elsewhere (CPU; no biases; fc width or C not a multiple of 8; types
// cuBLASLt's epilogues do not take; fused_kernel(false) or
// ACCEL_FUSED_KERNELS=0: accel/ops/fused_kernels.h) it is exactly the ATen
// composition above, the reference the GEMMs are tested against. Under
// autocast the inputs are cast as at::linear's are and the result has
// autocast's type.
#include <torch/arg.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API LinearGeluLinearOptions {
  /// Use cuBLASLt's epilogues where they apply; false: the ATen composition.
  TORCH_ARG(bool, fused_kernel) = true;
};

/// x [..., C], fc_weight [H, C], fc_bias [H] or undefined, proj_weight
/// [C_out, H], proj_bias [C_out] or undefined -> [..., C_out]. Throws
/// std::invalid_argument naming a shape that does not fit.
ACCEL_API torch::Tensor linear_gelu_linear(const torch::Tensor& x, const torch::Tensor& fc_weight,
                                           const torch::Tensor& fc_bias, const torch::Tensor& proj_weight,
                                           const torch::Tensor& proj_bias, const LinearGeluLinearOptions& options = {});

}  // namespace accel
