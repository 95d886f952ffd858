#pragma once
// The trackers accel offers by name, for AcceleratorOptions::log_with and
// Accelerate's `log_with` spellings.
//
// Accelerate's other names (aim, clearml, trackio, swanlab) are
// refused by name rather than accepted and ignored:
// accel offers only trackers whose output the tests read back with that
// tool's own reader.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "accel/tracking/tracker.h"
#include "accel/util/export.h"

namespace accel {

/// The names make_tracker takes: {"tensorboard", "mlflow", "dvclive", "wandb", "comet_ml"}.
ACCEL_API std::vector<std::string> available_trackers();

/// The names of log_with with "all" replaced by every available tracker
/// (mlflow only when MLFLOW_TRACKING_URI is set, as Accelerate's "all"
/// takes only what can run) and repeats dropped; throws naming an unknown name, or one of Accelerate's
/// that accel does not offer, with the names it does.
ACCEL_API std::vector<std::string> resolve_tracker_names(const std::vector<std::string>& log_with);

/// Whether the tracker `name` writes files under a logging folder.
ACCEL_API bool tracker_requires_logging_directory(const std::string& name);

/// The tracker `name` for the run `run_name` (Accelerate's project_name),
/// writing under `logging_dir` if it writes files. Not started.
ACCEL_API std::shared_ptr<GeneralTracker> make_tracker(const std::string& name, const std::string& run_name,
                                                       const std::filesystem::path& logging_dir);

}  // namespace accel
