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
// Sequence parallel (Megatron-LM's): between the tensor-parallel regions
// (LayerNorms, dropouts, residual adds) each rank holds a slice of the
// sequence instead of the whole activation; the crossings then move along
// the sequence dimension `dim`:
//
//   scatter_to_sequence   replicated -> sequence slices            fwd: own slice       bwd: all-gather
//   gather_from_sequence  sequence slices -> whole, used by        fwd: all-gather      bwd: reduce-scatter
//                         sharded weights (column-parallel input)       (own slice when the gradient is whole)
//   reduce_scatter_to_sequence  partial sums -> sequence slices    fwd: reduce-scatter  bwd: all-gather
//                               (row-parallel output)
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

/// This rank's slice of dimension `dim` of `x` (the sequence; it must
/// divide by the group size: an error names both); backward all-gathers the
/// gradient's slices.
ACCEL_API torch::Tensor scatter_to_sequence_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group,
                                                            int64_t dim);

/// Every rank's slice concatenated along `dim` in group-rank order. In
/// backward `grad_is_partial` (the whole activation feeds column-parallel
/// weights, so each rank's gradient of it is a partial sum): the gradient
/// is summed over the group and this rank keeps its slice (reduce-scatter);
/// otherwise (every rank holds the whole gradient) it keeps its slice alone.
ACCEL_API torch::Tensor gather_from_sequence_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group,
                                                             int64_t dim, bool grad_is_partial = true);

/// The sum over `group` of `x` (row-parallel partial outputs), of which
/// this rank keeps its slice of `dim`; backward all-gathers the gradient.
ACCEL_API torch::Tensor reduce_scatter_to_sequence_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group,
                                                                   int64_t dim);

}  // namespace accel
