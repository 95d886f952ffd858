#pragma once
// split_qkv_heads: a fused q/k/v projection's output [B, T, 3 * H * D]
// (all queries, then all keys, then all values, each H heads of D; Hugging
// Face's GPT-2 order) as three [B, H, T, D] views, the layout
// scaled_dot_product_attention takes:
//
//   auto qkv = accel::split_qkv_heads(c_attn(x), head_size);
//   auto y = torch::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], {}, 0.0, /*is_causal=*/true);
//
// The forward is the view and permute a model writes by hand (no copy). The
// difference is backward: autograd's own backward of that view, permute and
// unbind stacks the three gradients into a [3, B, H, T, D] tensor and then
// copies it again into the [B, T, 3 * H * D] layout of the projection's
// output, two full passes over the gradient. Here each gradient is written
// once, straight into its slot of that layout (a missing one as zeros).
// Same values, bit for bit, on every device.
#include <vector>

#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

/// qkv [B, T, 3 * H * D] -> {q, k, v}, each [B, H, T, D] (views of qkv).
/// Throws std::invalid_argument naming the shape when qkv is not 3-D or its
/// last size is not a multiple of 3 * head_size.
ACCEL_API std::vector<torch::Tensor> split_qkv_heads(const torch::Tensor& qkv, int64_t head_size);

}  // namespace accel
