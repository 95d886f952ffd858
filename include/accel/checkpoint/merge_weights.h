#pragma once
// Merging a sharded (ZeRO, or full_shard's SHARDED_STATE_DICT) checkpoint's
// weights into one model, what
// `accel merge-weights` runs (Accelerate's `accelerate merge-weights` does
// the same for FSDP's sharded state dicts).
//
// A sharded save_state folder holds (see docs/sharding.md):
//   zero_layout.json                 {"format": "accel-zero-v1", "world_size": N,
//                                     "strategy": ..., "groups": [{"padded_numel": P,
//                                     "params": [{"name", "shape", "dtype", "offset", "numel"}]}]}
//   zero_shard_rank<r>.safetensors   for r = 0..N-1: "group.<g>.param", the fp32
//                                    elements [r*P/N, (r+1)*P/N) of group g
// The slices of each group are laid end to end in rank order; each parameter
// is cut out at its offset, shaped, cast to its dtype and written under its
// name to <output_dir>/model.safetensors (sharded with
// model.safetensors.index.json past max_shard_size), through temporary
// names renamed into place, so a failed merge leaves nothing half written.
#include <filesystem>

#include "accel/checkpoint/model_files.h"
#include "accel/util/export.h"

namespace accel {

/// The merged weights, in the layout's order (groups, then parameters).
/// Throws std::runtime_error naming the folder and what is wrong: no
/// zero_layout.json, a bad layout entry, missing rank files (all listed),
/// rank files beyond world_size, a missing slice or one of the wrong size
/// or dtype (file, tensor and both sizes named).
ACCEL_API safetensors::NamedTensors merged_zero_weights(const std::filesystem::path& checkpoint_dir);

/// The weights of a folder of slice files (model_fsdp_rank<r>.safetensors,
/// src/accel/checkpoint/tensor_slices.h): full_shard's SHARDED_STATE_DICT,
/// a tensor-parallel save_state, or save_model_slices of pipeline stages
/// (checkpoint/model_slices.h). Each tensor is joined from every file's
/// slices in its model dtype, in the order first met (files in rank order).
/// Throws std::runtime_error naming missing rank files, elements no slice
/// holds, or slices that overlap without repeating each other exactly.
ACCEL_API safetensors::NamedTensors merged_sliced_weights(const std::filesystem::path& checkpoint_dir);

/// merged_sliced_weights (when the folder holds model_fsdp_rank0.safetensors)
/// or merged_zero_weights, written to `output_dir` (made if missing) with
/// write_model_files. With remove_checkpoint_dir, the checkpoint folder is
/// removed after the weights are in place (refused when output_dir lies
/// inside it).
ACCEL_API SavedModel merge_weights(const std::filesystem::path& checkpoint_dir, const std::filesystem::path& output_dir,
                                   const SaveModelOptions& options = {}, bool remove_checkpoint_dir = false);

}  // namespace accel
