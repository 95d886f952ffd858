#pragma once
// ProjectConfiguration: where save_state puts checkpoints when it is given
// no folder, as Accelerate's ProjectConfiguration. With
// automatic_checkpoint_naming, save_state() writes
// <project_dir>/checkpoints/checkpoint_<iteration> and counts iteration
// up; load_state() without a folder takes the highest-numbered one; with
// total_limit only the newest total_limit checkpoints are kept.
//
// Unlike Accelerate, old checkpoints are removed after the new one is
// complete (not before it is written), so a failed save never leaves fewer
// than total_limit; and the iteration counter is stored in the checkpoint
// and restored by load_state (the next save continues the numbering).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

#include <torch/arg.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API ProjectConfiguration {
  /// Root of checkpoints (and, by default, of logs).
  TORCH_ARG(std::filesystem::path, project_dir) = ".";
  /// Where file trackers (TensorBoard) write their runs; project_dir when
  /// unset.
  TORCH_ARG(std::optional<std::filesystem::path>, logging_dir) = std::nullopt;
  TORCH_ARG(bool, automatic_checkpoint_naming) = false;
  /// Checkpoints kept under automatic naming; unset keeps all. >= 1.
  TORCH_ARG(std::optional<int64_t>, total_limit) = std::nullopt;
  /// The number of the next automatic checkpoint.
  TORCH_ARG(int64_t, iteration) = 0;

 public:  // TORCH_ARG leaves the section private
  /// <project_dir>/checkpoints
  std::filesystem::path checkpoints_dir() const { return project_dir() / "checkpoints"; }
};

/// The "checkpoint_<n>" folders of `checkpoints_dir`, by n ascending;
/// anything else there (a staging folder, a user's file) is ignored.
/// Empty when the folder does not exist.
ACCEL_API std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(
    const std::filesystem::path& checkpoints_dir);

}  // namespace accel
