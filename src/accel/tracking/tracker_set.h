#pragma once
// TrackerSet: the trackers of one run, as the Accelerator drives them. A
// failure while starting stops the run before training; a failure while
// logging or finishing is reported once per tracker and training goes on
// (a tracking server that goes away must not cost the run).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "accel/tracking/tracker.h"

namespace accel {

class TrackerSet {
 public:
  /// Starts each tracker, then gives it `config` (when not empty); throws
  /// naming the tracker that failed. The ones already started are finished.
  void start(std::vector<std::shared_ptr<GeneralTracker>> trackers, const TrackerConfig& config);
  void log(const LogValues& values, std::optional<int64_t> step);
  /// Finishes every tracker (one failing does not stop the others) and
  /// forgets them.
  void finish();

  bool started() const { return !entries_.empty(); }
  /// The started tracker `name`, or nullptr.
  std::shared_ptr<GeneralTracker> get(const std::string& name) const;

 private:
  struct Entry {
    std::shared_ptr<GeneralTracker> tracker;
    bool failure_reported = false;
  };
  void report(Entry& entry, const std::string& doing, const std::exception& error);

  std::vector<Entry> entries_;
};

}  // namespace accel
