#pragma once
// The launchers of the residual-add + LayerNorm kernels, without LibTorch:
// raw pointers, sizes and a stream. add_layer_norm.h wraps them for tensors.
//
// Element types: the sum s = x + r is in x's type S (float32 or bfloat16);
// r is S, or bfloat16 when S is float32 (autocast: a float32 residual
// stream plus a bf16 layer output); weight and bias are float32 or S; the
// normalised output is float32 or bfloat16 (a float32 stream may be
// normalised straight into the bf16 a Linear under autocast reads). All
// arithmetic is float32; each output is rounded once.
//
// Without a residual (r null: a plain LayerNorm, accel::layer_norm) the
// forward normalises x and writes no sum; the backward then takes x as
// `sum` and no grad_sum.
#include <cstdint>

#include <cuda_runtime_api.h>

#include "accel/ops/cuda/dtype.h"

namespace accel::kernels {

struct AddLayerNormForwardArgs {
  const void* x = nullptr;  // [rows, cols], contiguous, type sum_dtype
  const void* r = nullptr;  // [rows, cols], contiguous, type r_dtype; or null: no add, sum is x
  DType sum_dtype = DType::f32;
  DType r_dtype = DType::f32;
  const void* weight = nullptr;  // [cols] or null (1)
  const void* bias = nullptr;    // [cols] or null (0)
  DType weight_dtype = DType::f32;
  void* sum = nullptr;  // [rows, cols] = x + r rounded to sum_dtype; null (unused) when r is null
  void* out = nullptr;  // [rows, cols] = (sum - mean) * rstd * weight + bias
  DType out_dtype = DType::f32;
  float* mean = nullptr;  // [rows]
  float* rstd = nullptr;  // [rows] = 1 / sqrt(biased variance + eps)
  int64_t rows = 0;
  int64_t cols = 0;
  float eps = 1e-5f;
};

struct AddLayerNormBackwardArgs {
  const void* grad_out = nullptr;  // [rows, cols], type out_dtype
  DType out_dtype = DType::f32;
  const void* grad_sum = nullptr;  // [rows, cols] or null: the gradient reaching `sum` directly, type sum_dtype
  const void* sum = nullptr;       // [rows, cols] from the forward (x when it had no residual)
  DType sum_dtype = DType::f32;
  const float* mean = nullptr;
  const float* rstd = nullptr;
  const void* weight = nullptr;  // [cols] or null
  DType weight_dtype = DType::f32;
  void* grad_input = nullptr;  // [rows, cols], type sum_dtype: d loss / d sum, the gradient of x and r
  // [blocks, cols] float32 each, or both null: each block's sums of
  // grad_out * normalised and of grad_out over its rows; the caller adds
  // the rows (a fixed order: the result does not change from run to run).
  float* weight_grad_partial = nullptr;
  float* bias_grad_partial = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int blocks = 1;
};

/// Whether the kernels take this combination of types (see above).
bool add_layer_norm_kernel_supports(DType sum, DType r, DType weight, DType out);

/// One warp per row: the sum, its mean and variance, the normalised output.
void launch_add_layer_norm_forward(const AddLayerNormForwardArgs& args, cudaStream_t stream);

/// One block per row at a time, `blocks` blocks: the gradient of the sum in
/// one pass over each row, and the partial weight and bias gradients.
void launch_add_layer_norm_backward(const AddLayerNormBackwardArgs& args, cudaStream_t stream);

}  // namespace accel::kernels
