#pragma once
// How a sequence is split over the ranks of a context-parallel group, and
// put back together.
//
// Contiguous: rank r of n holds positions [r * S/n, (r+1) * S/n).
// Load-balanced (torch's round-robin or "zigzag" split, for causal
// attention): the sequence is cut into 2n equal chunks and rank r holds
// chunk r followed by chunk 2n-1-r. Under a causal mask the late positions
// attend over many more keys than the early ones; pairing an early chunk
// with a late one gives every rank the same amount of attention work.
//
// A rank's part keeps its chunks in that order, so the model sees a
// sequence of S/n tokens whose global positions are context_parallel_positions.
#include <cstdint>

#include <torch/types.h>

#include "accel/dist/collectives.h"
#include "accel/util/export.h"

namespace accel {

/// The global positions (a 1-D long tensor of length / size entries) that
/// rank `rank` of `size` holds of a sequence of `length` tokens. Throws
/// std::invalid_argument naming both when `length` does not divide by
/// `size` (contiguous) or by 2 * `size` (load-balanced).
ACCEL_API torch::Tensor context_parallel_positions(int64_t length, int64_t size, int64_t rank, bool load_balance,
                                                   const torch::TensorOptions& options = torch::kLong);

/// Rank `rank`'s part of `tensor` along `seq_dim` (negative counts from the
/// end), cut as above; contiguous in memory. Same errors as above.
ACCEL_API torch::Tensor shard_sequence(const torch::Tensor& tensor, int64_t seq_dim, int64_t size, int64_t rank,
                                       bool load_balance);

/// The inverse of shard_sequence over `group`: every rank's part gathered
/// and put back in global order along `seq_dim`, on every rank. A
/// collective (each rank of the group calls it with a part of the same
/// shape); not differentiable (for outputs, logits, checks). With no group
/// or a group of one rank, `part` itself.
ACCEL_API torch::Tensor unshard_sequence(const torch::Tensor& part, int64_t seq_dim, const ProcessGroupPtr& group,
                                         bool load_balance);

}  // namespace accel
