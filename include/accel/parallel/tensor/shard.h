#pragma once
// Which part of a full weight a tensor-parallel rank holds. Every rank
// slices the same full tensor, so a model initialised identically on every
// rank (same seed) is, shard for shard, the single-process model.
#include <cstdint>
#include <string>
#include <utility>

#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

/// Rank `rank`'s slice of dim `dim` of `full` among `size` ranks, as a new
/// contiguous tensor. With `packed` > 1 the dimension holds `packed` equal
/// blocks laid end to end (a fused q/k/v projection: 3); each block is
/// split on its own and the rank's pieces are concatenated, so the rank
/// gets its share of every block. Throws std::invalid_argument naming
/// `what`, the dimension's size and the divisor when the size is not a
/// multiple of packed * size.
ACCEL_API torch::Tensor shard_dim(const torch::Tensor& full, int64_t dim, int rank, int size, int64_t packed = 1,
                                  const std::string& what = "tensor");

/// The inverse of shard_dim over the pieces of every rank (in rank order).
ACCEL_API torch::Tensor unshard_dim(const std::vector<torch::Tensor>& pieces, int64_t dim, int64_t packed = 1);

/// The [begin, end) rows of a vocabulary of `vocab_size` tokens that rank
/// `rank` of `size` holds: equal parts, the first vocab_size % size ranks
/// one token more (so any vocabulary splits, GPT-2's 50257 included).
ACCEL_API std::pair<int64_t, int64_t> vocab_range(int64_t vocab_size, int rank, int size);

}  // namespace accel
