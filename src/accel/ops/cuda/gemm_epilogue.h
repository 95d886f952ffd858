#pragma once
// Row-major GEMMs with cuBLASLt epilogues: the work that would otherwise run
// as separate element-wise or reduction kernels around a GEMM, done while
// the GEMM writes its tile (a bias and GELU, the bias gradient). Built only
// with ACCEL_CUDA_KERNELS (accel/ops/cuda_kernels.h); accel::linear and
// accel::linear_gelu_linear call them.
//
// Every tensor is a CUDA matrix with contiguous rows, all of one type
// (float32, bfloat16 or float16), on one device. Each function returns false
// without writing anything when cuBLASLt offers no algorithm for the call
// (the caller then runs the ATen composition), and throws
// std::invalid_argument naming a tensor whose shape or type does not fit.
// GELU here is the tanh approximation (cuBLASLt's), torch's
// gelu(approximate="tanh").
#include <torch/types.h>

namespace accel::kernels {

/// Whether the functions below take `t`: CUDA, 2-D, float32 / bfloat16 /
/// float16, contiguous, 16-byte aligned, rows of a multiple of 8 elements
/// (cuBLASLt's alignment of leading dimensions).
bool gemm_epilogue_supports(const torch::Tensor& t);

/// Whether they take `t` as a bias (or bias gradient): CUDA, 1-D,
/// contiguous, 16-byte aligned (a bias viewed into a flat buffer may not be).
bool gemm_epilogue_supports_bias(const torch::Tensor& t);

/// out = gelu(x @ weight^T + bias), and pre = x @ weight^T + bias, GELU's
/// input (for the backward): x [N, K], weight [M, K], bias [M];
/// out and pre [N, M].
bool linear_bias_gelu(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                      const torch::Tensor& out, const torch::Tensor& pre);

/// grad_weight = grad_out^T @ x and grad_bias = grad_out summed over rows, in
/// one GEMM: grad_out [N, M], x [N, K]; grad_weight [M, K], grad_bias [M].
bool linear_weight_and_bias_grad(const torch::Tensor& grad_out, const torch::Tensor& x,
                                 const torch::Tensor& grad_weight, const torch::Tensor& grad_bias);

}  // namespace accel::kernels
