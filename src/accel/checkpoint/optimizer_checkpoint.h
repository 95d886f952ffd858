#pragma once
// OptimizerCheckpoint: one prepared optimizer's part of a save_state folder
// (docs/checkpointing.md): the files it writes, the files it needs back,
// whether a run with another number of processes can resume it. The mode
// that prepared the optimizer makes it (Replication::optimizer_checkpoint),
// so save_state and load_state never name an engine type, and a new mode
// brings its own files without touching them.
//
// save_state calls save() on every process; load_state asks every process
// for files_to_load() and other_world_refusal() before anything is read
// (a refusal on one rank stops every rank), then calls load().
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace accel {

class AcceleratedOptimizer;

/// Accelerate's numbering of a checkpoint's files: (optimizer, 0,
/// ".safetensors") is optimizer.safetensors, then optimizer_1.safetensors...
std::string numbered(const std::string& stem, size_t index, const std::string& extension);

/// The whole text of a checkpoint file; throws naming it when it cannot be read.
std::string read_checkpoint_text(const std::filesystem::path& path);

class OptimizerCheckpoint {
 public:
  virtual ~OptimizerCheckpoint() = default;
  /// Writes the `index`-th prepared optimizer's state into `dir` (the
  /// folder being staged). Every process calls it; `rank` 0 is the main
  /// process. May be a collective.
  virtual void save(const std::filesystem::path& dir, size_t index, int rank) = 0;
  /// Why `dir`, saved by another number of processes, cannot restore this
  /// optimizer (a sentence, with the way out); "" when it can.
  virtual std::string other_world_refusal(const std::filesystem::path& dir, size_t index) const { return ""; }
  /// The files process `rank` reads to restore it from `dir`.
  virtual std::vector<std::filesystem::path> files_to_load(const std::filesystem::path& dir, size_t index, int rank,
                                                           bool same_world) const = 0;
  /// Restores it from `dir`; files_to_load's files are there on every process.
  virtual void load(const std::filesystem::path& dir, size_t index, int rank, bool same_world) = 0;
};

/// The checkpoint of an optimizer that every process holds whole (one
/// process, DDP, master weights): optimizer[_i].safetensors and .json
/// (checkpoint/optimizer_state.h) from the main process, with the fp32
/// masters as "master.<m>" tensors when there are any. A run with any
/// number of processes loads it.
std::unique_ptr<OptimizerCheckpoint> full_optimizer_checkpoint(AcceleratedOptimizer& optimizer);

}  // namespace accel
