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

/// Appends this rank's `piece` of `parameter` (parameter sharding's: the
/// elements [begin, begin + piece.numel()) of `parameter` flattened) as
/// slices of `whole` stored in `dtype`, keys `key`, `key`:1, ... When
/// `parameter` is a tensor-parallel slice the piece goes as the blocks of
/// the whole tensor it covers, each at the offset that composes the
/// piece's place in the slice with the slice's place in the whole (a flat
/// range of a slice is up to a few blocks per dimension, and a slice of a
/// packed q/k/v or a column split is not one range of the whole). Any
/// other parameter's piece goes as elements [begin, ...) of the whole, and
/// only when `replicated` (one tensor-parallel rank writes those, its
/// flat layout being its own under an uneven vocabulary).
void append_piece_slices(std::vector<Slice>& out, const std::string& key, const std::string& whole,
                         const torch::Tensor& piece, const torch::Tensor& parameter, int64_t begin,
                         torch::ScalarType dtype, bool replicated);

/// The piece back: elements [begin, begin + numel) of this rank's part of
/// `whole` (its tensor-parallel slice when `parameter` is one, else the
/// whole), flattened, in `dtype`, read from slices of any layout.
torch::Tensor read_piece(const SliceSet& slices, const std::string& whole, const torch::Tensor& parameter,
                         int64_t begin, int64_t numel, torch::ScalarType dtype);

/// The whole shape `parameter` is part of: its tensor-parallel whole, or its own.
std::vector<int64_t> whole_shape_of(const torch::Tensor& parameter);

/// What this rank holds of `whole` (read from a checkpoint of any layout)
/// for `parameter`: its tensor-parallel slice when `whole` has the shape
/// of the whole parameter, else `whole` itself.
torch::Tensor local_part_of(const torch::Tensor& parameter, const torch::Tensor& whole);

}  // namespace accel
