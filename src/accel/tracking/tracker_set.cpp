#include "accel/tracking/tracker_set.h"

#include <exception>
#include <stdexcept>
#include <utility>

#include "accel/dist/logging.h"
#include "accel/util/check.h"

namespace accel {

void TrackerSet::start(std::vector<std::shared_ptr<GeneralTracker>> trackers, const TrackerConfig& config) {
  for (auto& tracker : trackers) {
    try {
      tracker->start();
      entries_.push_back({tracker});
      if (!config.empty()) tracker->store_init_configuration(config);
    } catch (const std::exception& error) {
      finish();
      fail<std::runtime_error>("init_trackers: the tracker \"", tracker->name(), "\" could not start: ", error.what());
    }
  }
}

void TrackerSet::report(Entry& entry, const std::string& doing, const std::exception& error) {
  if (entry.failure_reported) return;
  entry.failure_reported = true;
  get_logger("accel.tracking")
      .warning(str("the tracker \"", entry.tracker->name(), "\" failed ", doing, ": ", error.what(),
                   " (training goes on; this tracker's later failures are not reported)"),
               LogOptions{.main_process_only = false});
}

void TrackerSet::log(const LogValues& values, std::optional<int64_t> step) {
  for (auto& entry : entries_) {
    try {
      entry.tracker->log(values, step);
    } catch (const std::exception& error) {
      report(entry, step ? str("to log step ", *step) : std::string("to log"), error);
    }
  }
}

void TrackerSet::finish() {
  auto entries = std::move(entries_);
  entries_.clear();
  for (auto& entry : entries) {
    try {
      entry.tracker->finish();
    } catch (const std::exception& error) {
      report(entry, "to finish", error);
    }
  }
}

std::shared_ptr<GeneralTracker> TrackerSet::get(const std::string& name) const {
  for (const auto& entry : entries_)
    if (entry.tracker->name() == name) return entry.tracker;
  return nullptr;
}

}  // namespace accel
