#pragma once
// Tensor front of the one-pass softmax cross-entropy kernel
// (softmax_cross_entropy_kernel.h), built only with ACCEL_CUDA_KERNELS
// (accel/ops/cuda_kernels.h). linear_cross_entropy calls it on each chunk.
#include <cstdint>

#include <torch/types.h>

namespace accel::kernels {

/// Whether the kernel takes these tensors: CUDA, logits float32 / bfloat16 /
/// float16 with unit column stride, grad (if defined) likewise.
bool softmax_cross_entropy_supports(const torch::Tensor& logits, const torch::Tensor& grad);

/// logits [rows, cols] whose first `classes` columns are classes (the rest
/// padding), target [rows] int64. Writes loss [rows] float32
/// (logsumexp - logit[target]; 0 where target == ignore_index) and, when
/// `grad` is defined, grad [rows, cols] = (softmax - one_hot(target)) *
/// grad_scale, 0 in ignored rows and padding columns. `grad` may be
/// `logits` itself. Throws std::invalid_argument naming a tensor that does
/// not fit.
void softmax_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target, int64_t classes,
                           int64_t ignore_index, const torch::Tensor& loss, const torch::Tensor& grad,
                           double grad_scale = 1.0);

}  // namespace accel::kernels
