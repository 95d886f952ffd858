#pragma once
// The slices a rank of a fully sharded model writes (SHARDED_STATE_DICT,
// checkpoint/tensor_slices.h), on a device mesh too: there a parameter may
// be a tensor-parallel slice, of which the rank holds a piece, and the
// piece goes as the blocks of the whole tensor it covers
// (checkpoint/tensor_parallel_slices.h's append_piece_slices), so that any
// layout reloads the files and `accel merge-weights` joins them.
#include <filesystem>

namespace accel::fsdp {

class FullyShardedModel;

/// Which of the model's tensors one rank writes, into which file.
struct FullyShardedSliceWriter {
  int index = 0;  // its file, of
  int count = 1;  // files written together (every rank of the job writes one)
  /// Its pieces of the parameters no tensor-parallel plan split: every rank
  /// without tensor parallelism, tensor-parallel coordinate 0 with (the
  /// others hold the same tensors, flattened in their own layout).
  bool unsplit_parameters = true;
  /// The buffers (whole, or a tensor-parallel rank's block of them).
  bool buffers = false;
};

/// Writes `writer`'s part of `model` to `file` (through a temporary name).
void save_fully_sharded_slices(const FullyShardedModel& model, const std::filesystem::path& file,
                               const FullyShardedSliceWriter& writer);

}  // namespace accel::fsdp
