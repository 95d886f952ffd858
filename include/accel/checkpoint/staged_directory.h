#pragma once
// A directory that appears whole or not at all (save_state's checkpoint
// folders): its files are written into a staging directory next to the
// target, "<parent>/.<name>.staging", which commit_staging() then puts in
// the target's place with one rename. An existing target is swapped out
// atomically (renameat2 RENAME_EXCHANGE) and removed afterwards, so at
// every instant the target path holds either the complete old directory or
// the complete new one; a process killed mid-save leaves only the staging
// directory, which no loader looks at and the next save clears.
//
// These functions do not coordinate processes: the caller decides which
// process stages and commits, and waits for the others in between.
#include <filesystem>

#include "accel/util/export.h"

namespace accel {

/// Where the files for `target` are written until commit.
ACCEL_API std::filesystem::path staging_directory(const std::filesystem::path& target);

/// Creates an empty staging directory for `target` (and its parents),
/// clearing what a failed earlier save left there.
ACCEL_API void begin_staging(const std::filesystem::path& target);

/// Makes the staged directory durable and moves it onto `target`.
/// Throws std::runtime_error naming both paths and the system error.
ACCEL_API void commit_staging(const std::filesystem::path& target);

}  // namespace accel
