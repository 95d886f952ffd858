#pragma once
// The launcher of the one-pass softmax cross-entropy kernel, without
// LibTorch: raw pointers, sizes and a stream. softmax_cross_entropy.h wraps
// it for tensors.
#include <cstdint>

#include <cuda_runtime_api.h>

#include "accel/ops/cuda/dtype.h"

namespace accel::kernels {

struct SoftmaxCrossEntropyArgs {
  const void* logits = nullptr;  // [rows, cols], row stride ld_logits elements
  DType logits_dtype = DType::f32;
  int64_t ld_logits = 0;
  const int64_t* target = nullptr;  // [rows]: a class in [0, classes) or ignore_index
  float* loss = nullptr;            // [rows]: logsumexp - logit[target]; 0 where ignored
  void* grad = nullptr;             // [rows, cols] or null (loss only); may be `logits` itself
  DType grad_dtype = DType::f32;
  int64_t ld_grad = 0;
  int64_t rows = 0;
  int64_t classes = 0;  // columns that are classes; those in [classes, cols) are padding
  int64_t cols = 0;
  int64_t ignore_index = -100;
  float grad_scale = 1.0f;  // grad = (softmax - one_hot(target)) * grad_scale
};

/// One block per row: an online max / sum-of-exponentials pass, then a pass
/// writing the gradient. Padding columns count as -inf logits (their
/// gradient is 0); ignored rows get loss 0 and a zero gradient; a target
/// outside [0, classes) gets a NaN loss and a NaN gradient row (the kernel
/// cannot throw; the NaN reaches the loss the caller reads).
void launch_softmax_cross_entropy(const SoftmaxCrossEntropyArgs& args, cudaStream_t stream);

}  // namespace accel::kernels
