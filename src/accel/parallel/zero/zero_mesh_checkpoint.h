#pragma once
// ZeRO's OptimizerCheckpoint on a device mesh with tensor or context
// parallel: the engine of each tensor-parallel rank shards the state of its
// own slices over its data-parallel group (dp, or dp x cp), in a flat
// layout of its own (an uneven vocabulary makes the tp ranks' layouts
// differ), its ranks numbered in that group, not in the job. Each group's
// shards and layout go in a folder of their own, numbered
// pp_coordinate * tp_size + tp_coordinate (0 without tensor or pipeline
// parallel: under pp each stage's ranks hold another part of the model):
//   zero_tp<t>/zero_layout[_i].json             data-parallel rank 0 of the group
//   zero_tp<t>/zero_shard[_i]_rank<d>.safetensors  data-parallel rank d
// (parallel/zero/zero_checkpoint.h's files), which the same layout loads back.
#include <memory>

#include "accel/checkpoint/optimizer_checkpoint.h"
#include "accel/parallel/zero/zero_engine.h"

namespace accel::zero {

/// `tp_coordinate`: this rank's group, pp_coordinate * tp_size +
/// tp_coordinate (0 without tp or pp); `tp_size`: how many groups there
/// are, pp_size * tp_size.
std::unique_ptr<OptimizerCheckpoint> zero_mesh_optimizer_checkpoint(ZeroEngine& engine, int tp_coordinate, int tp_size);

/// Whether `dir` holds optimizer `index`'s state in this form.
bool has_zero_mesh_optimizer_files(const std::filesystem::path& dir, size_t index);

}  // namespace accel::zero
