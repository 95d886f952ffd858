#pragma once
// CometTracker: a Comet experiment written offline, as Accelerate's
// CometMLTracker leaves it under comet_ml.start(project_name=<run name>)
// when Comet runs offline: one archive for `comet upload` to send later,
//   <offline directory>/<experiment key>-<6 letters>.zip  (mode create: <key>.zip)
// holding messages.json (one JSON message a line) and experiment.json (the
// key, project, workspace, start and stop times), stored uncompressed as
// comet_ml's own zipfile writes it.
//
// What each call sends, as Accelerate's tracker through comet_ml:
//   start()                     log_other offline_experiment = true
//   store_init_configuration    log_parameters: a parameter_msg per key, in
//                               key order (source "manual")
//   log(values, step)           step given: set_step, a "curr_step"
//                               parameter when it changed; then a number is
//                               a metric_msg at the current step (none set
//                               yet: null), a string a log_other, a map of
//                               numbers a metric per entry named by the
//                               entry alone (log_metrics without a prefix),
//                               in key order; a tensor is left out, as
//                               Accelerate does (with one warning)
//   finish()                    experiment.json, then the archive is
//                               renamed into place
// NaN and the infinities are stored as "NaN", "Infinity", "-Infinity";
// keys past 100 characters and text past 1000 are cut as comet_ml cuts
// them. comet_ml's automatic logging (system metrics, installed packages,
// source code, console output) has no counterpart.
//
// Environment, with comet_ml's names and meanings:
//   COMET_OFFLINE_DIRECTORY  where the archive goes ('~' expanded); unset:
//                            the logging_dir given (project_dir by default)
//   COMET_START_ONLINE       unset or false (f, no, n, 0, off): offline.
//                            True is refused: accel does not talk to a
//                            Comet server (run `comet upload` on the archive)
//   COMET_START_MODE         get_or_create (default), create, or get (which
//                            needs COMET_EXPERIMENT_KEY: `comet upload`
//                            then adds to that experiment)
//   COMET_EXPERIMENT_KEY     the experiment key (32 to 50 letters and
//                            digits); unset: a new random one
//   COMET_WORKSPACE          the workspace the upload goes to
// A bad value is refused by start(), naming the variable, before training.
//
// Checked with comet_ml's own readers (`comet offline`, and the offline
// sender `comet upload` runs, up to the requests it would send); uploading
// needs a Comet account, which the tests do not have.
//
// The file is written on a thread of the tracker's own: log() encodes and queues.
// A tracker that goes unfinished completes its archive, as comet_ml's exit hook does.
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "accel/tracking/tracker.h"
#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API CometTracker : public GeneralTracker {
 public:
  /// `run_name` is the Comet project, as in Accelerate's CometMLTracker.
  CometTracker(std::string run_name, std::filesystem::path logging_dir, EnvLookup env = process_env());
  /// Finishes the experiment if finish() was not called (a write error is
  /// logged as a warning).
  ~CometTracker() override;

  std::string name() const override { return "comet_ml"; }
  /// Reads the environment and opens the archive under a temporary name;
  /// throws naming the variable or the folder when it cannot.
  void start() override;
  void store_init_configuration(const TrackerConfig& config) override;
  void log(const LogValues& values, std::optional<int64_t> step) override;
  /// Completes the archive and renames it into place; throws the first
  /// write error.
  void finish() override;
  /// Returns when everything logged so far is in the (still temporary)
  /// archive; throws the first write error not yet thrown.
  void flush();

  /// The experiment key (offline_id), known after start().
  const std::string& experiment_key() const { return key_; }
  /// Where finish() puts the archive, known after start().
  const std::filesystem::path& archive_path() const { return archive_; }

 private:
  struct Archive;  // what the writing thread keeps
  void send(std::string line);
  int64_t next_id() { return ++messages_; }

  std::string project_;
  std::filesystem::path logging_dir_;
  EnvLookup env_;
  std::string key_;
  std::filesystem::path archive_;
  std::shared_ptr<Archive> archive_file_;
  int64_t messages_ = 0;
  std::optional<int64_t> step_;                // comet_ml's curr_step
  std::map<std::string, std::string> params_;  // each parameter's last value sent, as JSON
  bool warned_tensor_ = false;
};

}  // namespace accel
