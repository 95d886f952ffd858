// Accelerator: experiment tracking (init_trackers, log, get_tracker,
// end_training), as Accelerate's.
#include <algorithm>
#include <cstdio>
#include <variant>

#include "accel/accelerator.h"
#include "accel/tracking/tracker_set.h"
#include "accel/tracking/trackers.h"
#include "accel/util/check.h"

namespace accel {

void Accelerator::init_trackers(const std::string& project_name, const TrackerConfig& config) {
  ACCEL_CHECK_STATE(!trackers_ || !trackers_->started(),
                    "init_trackers: the trackers are already started; call end_training() first");
  ACCEL_CHECK_ARG(!project_name.empty() && project_name.find('/') == std::string::npos && project_name != "." &&
                      project_name != "..",
                  "init_trackers: project_name \"", project_name,
                  "\" must name one folder (not empty, no \"/\", not \".\" or \"..\")");
  const std::filesystem::path logging_dir = project_.logging_dir().value_or(project_.project_dir());
  std::vector<std::shared_ptr<GeneralTracker>> here;
  // Every tracker accel offers by name runs on the main process only.
  if (is_main_process())
    for (const auto& name : tracker_names_) here.push_back(make_tracker(name, project_name, logging_dir));
  for (const auto& tracker : options_.trackers())
    if (is_main_process() || !tracker->main_process_only()) here.push_back(tracker);
  trackers_ = std::make_shared<TrackerSet>();
  trackers_->start(std::move(here), config);
}

void Accelerator::log(const LogValues& values, std::optional<int64_t> step) {
  if (trackers_) trackers_->log(values, step);
  if (auto bar = progress_.lock()) {
    std::string losses;
    for (const auto& [name, value] : values) {
      if (name.find("loss") == std::string::npos) continue;
      std::optional<double> x;
      if (const auto* d = std::get_if<double>(&value)) x = *d;
      if (const auto* i = std::get_if<int64_t>(&value)) x = static_cast<double>(*i);
      if (!x) continue;
      char text[32];
      std::snprintf(text, sizeof text, "%.4g", *x);
      losses += str(losses.empty() ? "" : ", ", name, "=", text);
    }
    if (!losses.empty()) ProgressBar::set_postfix(bar, losses);
  }
}

ProgressBar Accelerator::progress_bar(int64_t total, ProgressOptions options) {
  if (!is_main_process()) options.enabled(false);
  ProgressBar bar(total, std::move(options));
  progress_ = bar.state_;
  return bar;
}

std::shared_ptr<GeneralTracker> Accelerator::get_tracker(const std::string& name) const {
  const bool named = std::find(tracker_names_.begin(), tracker_names_.end(), name) != tracker_names_.end() ||
                     std::any_of(options_.trackers().begin(), options_.trackers().end(),
                                 [&](const auto& tracker) { return tracker->name() == name; });
  ACCEL_CHECK_ARG(named, "get_tracker: \"", name, "\" is not a tracker of this Accelerator (log_with and trackers)");
  return trackers_ ? trackers_->get(name) : nullptr;
}

void Accelerator::end_training() {
  if (trackers_) trackers_->finish();
}

}  // namespace accel
