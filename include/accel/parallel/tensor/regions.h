#pragma once
// Where a tensor-parallel region (Megatron-LM's f and g operators) meets
// the rest of the model. Inside a region each rank of the tensor-parallel
// group holds a slice of the features; outside it every rank holds the
// whole, identical activation. Each crossing is an autograd function whose
// backward is the transpose of its forward:
//
//   copy_to     replicated -> used by sharded weights   fwd: identity     bwd: all-reduce
//   reduce_from partial sums -> replicated              fwd: all-reduce   bwd: identity
//   gather_from last-dim slices -> replicated           fwd: all-gather   bwd: own slice
//   scatter_to  replicated -> last-dim slices           fwd: own slice    bwd: all-gather
//
// All reduce with a sum over `group`. With no group, or a group of one
// rank, each is the identity. Every rank of the group must call them in
// the same order (they are collectives, in forward and in backward).
#include <vector>

#include <torch/types.h>

#include "accel/dist/collectives.h"
#include "accel/util/export.h"

namespace accel {

/// Identity forward; the gradient is summed over `group` in backward (each
/// rank's column-parallel weights see the input, so each rank holds a
/// partial gradient of it).
ACCEL_API torch::Tensor copy_to_tensor_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group);

/// Sum over `group` forward (row-parallel partial outputs); the gradient
/// passes through unchanged in backward.
ACCEL_API torch::Tensor reduce_from_tensor_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group);

/// Every rank's `x` concatenated along the last dimension in group-rank
/// order; backward keeps this rank's slice of the gradient. `sizes` gives
/// each rank's last-dimension size when they differ (an uneven vocabulary
/// split); empty means every rank's equals this rank's.
ACCEL_API torch::Tensor gather_from_tensor_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group,
                                                           const std::vector<int64_t>& sizes = {});

/// This rank's slice of the last dimension, which must divide by the group
/// size (an error names both); backward gathers the gradient's slices.
ACCEL_API torch::Tensor scatter_to_tensor_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group);

}  // namespace accel
