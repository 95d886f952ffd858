#pragma once
// ZeRO's part of a save_state folder (docs/checkpointing.md, docs/sharding.md).
//
// Sharded form, written by every run with sharding, for prepared optimizer
// i (names for i = 0; then zero_layout_<i>.json, zero_<i>_shard_rank<r>...):
//   zero_layout.json              the FlatLayout (main process)
//   zero_shard_rank<r>.safetensors rank r's slice [r*S, (r+1)*S) of each group g:
//       group.<g>.param            fp32 master weights (the parameters' values
//                                  when there are no separate masters)
//       group.<g>.state.<field>    the optimizer state (exp_avg, momentum_buffer, ...)
//     metadata "step.<g>" (the group's step count, where the optimizer has one)
//     and "accel.optimizer" (hyper-parameters, as optimizer_state.h's JSON).
// Loading it needs the same number of processes and the same parameters.
//
// Consolidated form (ShardingOptions::consolidated_checkpoint): the full
// optimizer state gathered from every rank, in checkpoint/optimizer_state.h's
// format (optimizer.safetensors + optimizer.json, with "master.<m>" fp32
// tensors when the masters are copies, as MasterWeights saves them), which a
// run with any number of processes, sharded or not, loads.
#include <filesystem>
#include <string>

#include "accel/checkpoint/optimizer_state.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/parallel/zero/zero_engine.h"
#include "accel/util/export.h"

namespace accel::zero {

ACCEL_API std::string layout_file_name(size_t optimizer_index);
ACCEL_API std::string shard_file_name(size_t optimizer_index, int rank);

/// Writes this rank's shard to `file`.
ACCEL_API void save_shard(const ZeroEngine& engine, const std::filesystem::path& file);

/// Restores the optimizer state and masters from the shards in `dir` of
/// the i-th optimizer. Throws std::runtime_error naming the folder when it
/// was saved by another number of processes (advising a consolidated
/// checkpoint) or for other parameters.
ACCEL_API void load_shards(ZeroEngine& engine, const std::filesystem::path& dir, size_t optimizer_index);

/// The full optimizer state, gathered from every rank (a collective: every
/// rank calls it and gets it; tensors on the CPU).
ACCEL_API OptimizerStateFiles consolidated_state(const ZeroEngine& engine);

/// Restores a full state (consolidated_state's, or a non-sharded run's) into
/// this rank's slices; `source` names it in errors.
ACCEL_API void load_consolidated_state(ZeroEngine& engine, const safetensors::OrderedTensors& tensors,
                                       const std::string& json, const std::string& source);

}  // namespace accel::zero
