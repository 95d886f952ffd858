#pragma once
// The slices (tensor_slices.h) of a tensor that a tensor-parallel rank
// holds, and the way back: the model's weights and the optimizer state
// sliced like them are written and read alike (model_slices.h,
// tensor_parallel_optimizer_checkpoint.h).
#include <string>
#include <vector>

#include <torch/types.h>

#include "accel/checkpoint/tensor_slices.h"

namespace accel {

/// Appends to `out` this rank's `value` of the whole tensor `whole`:
/// `parameter` is the model's tensor `value` belongs to (the parameter
/// itself, or its exp_avg). A value shaped like a tensor-parallel slice
/// goes as the block(s) of the whole it is; any other value whole, and only
/// when `replicated` (one rank of each group writes those).
void append_tensor_slices(std::vector<Slice>& out, const std::string& whole, const torch::Tensor& value,
                          const torch::Tensor& parameter, bool replicated);

/// What this rank holds of `whole` (read from a checkpoint of any layout)
/// for `parameter`: its tensor-parallel slice when `whole` has the shape
/// of the whole parameter, else `whole` itself.
torch::Tensor local_part_of(const torch::Tensor& parameter, const torch::Tensor& whole);

}  // namespace accel
