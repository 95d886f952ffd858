#include "accel/tracking/trackers.h"

#include <algorithm>

#include "accel/tracking/comet.h"
#include "accel/tracking/dvclive.h"
#include "accel/tracking/mlflow.h"
#include "accel/tracking/tensorboard.h"
#include "accel/tracking/wandb.h"
#include "accel/util/check.h"
#include "accel/util/env.h"
#include "accel/util/strings.h"

namespace accel {
namespace {

// Accelerate's LoggerType values that accel does not offer.
const std::vector<std::string>& accelerate_only_trackers() {
  static const std::vector<std::string> names = {"aim", "trackio", "clearml", "swanlab"};
  return names;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// What "all" gives: as Accelerate's "all" takes only the trackers whose
// package is installed, MLflow only where a server is named.
std::vector<std::string> usable_trackers() {
  std::vector<std::string> names;
  for (const auto& name : available_trackers())
    if (name != "mlflow" || env_string(process_env(), "MLFLOW_TRACKING_URI")) names.push_back(name);
  return names;
}

}  // namespace

std::vector<std::string> available_trackers() { return {"tensorboard", "mlflow", "dvclive", "wandb", "comet_ml"}; }

std::vector<std::string> resolve_tracker_names(const std::vector<std::string>& log_with) {
  const auto offered = available_trackers();
  std::vector<std::string> names;
  for (const auto& given : log_with) {
    const std::string name = lower(given);
    ACCEL_CHECK_ARG(!contains(accelerate_only_trackers(), name), "log_with: \"", given,
                    "\" is a tracker of Accelerate's that accel does not offer; accel offers ", join(offered, ", "),
                    " (or \"all\"), or implement accel::GeneralTracker and pass it to trackers()");
    ACCEL_CHECK_ARG(name == "all" || contains(offered, name), "log_with: unknown tracker \"", given,
                    "\"; expected one of ", join(offered, ", "), " or \"all\"");
    for (const auto& one : name == "all" ? usable_trackers() : std::vector<std::string>{name})
      if (!contains(names, one)) names.push_back(one);
  }
  return names;
}

bool tracker_requires_logging_directory(const std::string& name) {
  return name == "tensorboard" || name == "wandb" || name == "comet_ml";
}

std::shared_ptr<GeneralTracker> make_tracker(const std::string& name, const std::string& run_name,
                                             const std::filesystem::path& logging_dir) {
  if (name == "tensorboard") return std::make_shared<TensorBoardTracker>(run_name, logging_dir);
  // As Accelerate's: the experiment is the project; DVCLive writes where Live() does by default.
  if (name == "mlflow") return std::make_shared<MLflowTracker>(run_name);
  if (name == "dvclive") return std::make_shared<DVCLiveTracker>();
  if (name == "wandb") return std::make_shared<WandbTracker>(run_name, logging_dir);
  // Offline, in COMET_OFFLINE_DIRECTORY or else logging_dir.
  if (name == "comet_ml") return std::make_shared<CometTracker>(run_name, logging_dir);
  fail("make_tracker: unknown tracker \"", name, "\"; expected one of ", join(available_trackers(), ", "));
}

}  // namespace accel
