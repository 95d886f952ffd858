#pragma once
// WandbTracker: a W&B run written offline, as `wandb.init(mode="offline")`
// leaves it, for `wandb sync` to upload later:
//   <logging_dir>/wandb/offline-run-<YYYYMMDD_HHMMSS>-<id>/run-<id>.wandb
// The file is W&B's transaction log (LevelDB-style framing of
// wandb_internal.Record protocol buffers): a header, the run (id, project
// = the run name init_trackers gets, start time, host), the configuration,
// then for each log() a history row and the summary's new values, and an
// exit record from finish(). Values go in as W&B stores them (value_json):
// numbers, strings, a map of numbers as a nested object, a tensor as a
// 64-bin histogram; NaN and infinities as "NaN", "Infinity", "-Infinity".
// Each row carries _step, _runtime and _timestamp, W&B's own columns.
//
// Checked with wandb's own reader (`wandb leet inspect`, the wandb-core
// that `wandb sync` uploads with); uploading needs a W&B server and an API
// key, which the tests do not have.
//
// Writes happen on a thread of the tracker's own: log() encodes and queues.
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "accel/tracking/tracker.h"
#include "accel/util/export.h"

namespace accel {

class ProtobufWriter;

class ACCEL_API WandbTracker : public GeneralTracker {
 public:
  /// `run_name` is the W&B project, as in Accelerate's WandBTracker.
  WandbTracker(std::string run_name, std::filesystem::path logging_dir);
  ~WandbTracker() override;

  std::string name() const override { return "wandb"; }
  /// Creates the run's folder and file; throws naming the folder when it cannot.
  void start() override;
  void store_init_configuration(const TrackerConfig& config) override;
  /// `step` unset: one past the last step logged (0 first), as wandb counts.
  void log(const LogValues& values, std::optional<int64_t> step) override;
  /// Writes the exit record and closes the file.
  void finish() override;
  /// Returns when everything logged so far is in the file.
  void flush();

  /// The run's id: 8 characters of [a-z0-9].
  const std::string& run_id() const { return run_id_; }
  /// offline-run-<time>-<id>: what `wandb sync` takes.
  const std::filesystem::path& run_dir() const { return run_dir_; }

 private:
  struct File;  // the run file and its framing
  // Appends a Record holding `message` as its field `field`.
  void append(int field, const ProtobufWriter& message);

  std::string project_;
  std::filesystem::path logging_dir_;
  std::string run_id_;
  std::filesystem::path run_dir_;
  std::chrono::system_clock::time_point started_;
  std::unique_ptr<File> file_;
  std::mutex mutex_;  // the record counter and the framing
  int64_t records_ = 0;
  int64_t next_step_ = 0;
};

}  // namespace accel
