#pragma once
// MLflowTracker: a run on an MLflow tracking server, through MLflow's REST
// API (/api/2.0/mlflow/...) over plain HTTP, as Accelerate's MLflowTracker
// records it through mlflow's Python client:
//   experiment  init_trackers' project_name (MLFLOW_EXPERIMENT_NAME wins),
//               found by name or created;
//   run         created in it (or, with MLFLOW_RUN_ID, that run resumed:
//               status RUNNING again), tagged with MLFLOW_TAGS (a JSON
//               object), mlflow.user, mlflow.source.name/type and the
//               description (mlflow.note.content);
//   params      store_init_configuration's values as Python's str() of
//               each (True, 0.001); one longer than 6000 characters is left
//               out with a warning, as Accelerate does;
//   metrics     each number log() gets, at its step, with the time of the
//               log() call; NaN and infinities sent as the Python client
//               sends them; strings, maps and tensors are left out with a
//               warning, as Accelerate does;
//   status      FINISHED at finish(); FAILED when the tracker goes while an
//               exception unwinds the stack without finish() having run.
//
// Where: MLflowOptions::tracking_uri, else MLFLOW_TRACKING_URI: an
// http://host:port address of `mlflow server` (https:// and local stores
// such as sqlite:/// are refused by name). MLFLOW_TRACKING_TOKEN (a bearer
// token) or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic
// auth) go with each request; MLFLOW_HTTP_REQUEST_TIMEOUT (seconds, 120)
// bounds one.
//
// Nothing waits on the server on the training thread: start() checks the
// settings and queues the run's creation; log() queues its metrics; a
// thread of the tracker's own sends them, as many steps in one call as
// MLflow's batch limits allow. When the server cannot be reached or answers
// an error, those values are lost and the next log() or finish() throws
// the error (the Accelerator reports it once, training goes on); the
// tracker tries again for later values (after a pause of 10 s when the
// server was unreachable), creating the run then if it could not before.
//
//   mlflow server --host 127.0.0.1 --port 5000 &
//   MLFLOW_TRACKING_URI=http://127.0.0.1:5000 ./train --log_with mlflow
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <torch/arg.h>

#include "accel/tracking/tracker.h"
#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel {

/// Tags by name.
using MLflowTags = std::map<std::string, std::string>;

struct ACCEL_API MLflowOptions {
  /// http://host:port of the tracking server; unset: MLFLOW_TRACKING_URI.
  TORCH_ARG(std::optional<std::string>, tracking_uri) = std::nullopt;
  /// The experiment; unset: the run name given to the tracker (Accelerate's
  /// project_name). MLFLOW_EXPERIMENT_NAME wins over both, as in Accelerate.
  TORCH_ARG(std::optional<std::string>, experiment_name) = std::nullopt;
  /// An existing run to log into; MLFLOW_RUN_ID wins.
  TORCH_ARG(std::optional<std::string>, run_id) = std::nullopt;
  /// The run's name (tag mlflow.runName); unset: the server picks one.
  TORCH_ARG(std::optional<std::string>, run_name) = std::nullopt;
  /// Tags of the run (and of the experiment when it is created);
  /// MLFLOW_TAGS (a JSON object) wins.
  TORCH_ARG(MLflowTags, tags) = {};
  /// The run's description (tag mlflow.note.content).
  TORCH_ARG(std::optional<std::string>, description) = std::nullopt;
  /// Where the environment variables come from (tests pass a map).
  TORCH_ARG(EnvLookup, env) = process_env();
};

class ACCEL_API MLflowTracker : public GeneralTracker {
 public:
  /// `project_name`: the experiment unless the options or
  /// MLFLOW_EXPERIMENT_NAME name one.
  explicit MLflowTracker(std::string project_name, MLflowOptions options = {});
  /// Without finish(): ends the run FINISHED, or FAILED while an exception
  /// unwinds the stack.
  ~MLflowTracker() override;

  std::string name() const override { return "mlflow"; }
  /// Reads the settings (throws naming a missing or unusable tracking URI,
  /// a bad MLFLOW_TAGS) and queues the run's creation.
  void start() override;
  void store_init_configuration(const TrackerConfig& config) override;
  /// `step` unset: the number of log() calls before this one.
  void log(const LogValues& values, std::optional<int64_t> step) override;
  /// Sends what is queued, then ends the run (status FINISHED).
  void finish() override;
  /// Returns when everything queued so far has been sent (or lost); throws
  /// the first error not yet thrown.
  void flush();

  /// The run's id once the server created it (after flush()), else "".
  std::string run_id() const;
  /// The experiment's name and the server's address, as resolved by start().
  const std::string& experiment_name() const { return experiment_name_; }
  const std::string& tracking_uri() const { return tracking_uri_; }

 private:
  struct Sender;  // the thread that talks to the server
  std::string project_name_;
  MLflowOptions options_;
  std::string experiment_name_;
  std::string tracking_uri_;
  std::unique_ptr<Sender> sender_;
  std::string finished_run_id_;
  int64_t calls_ = 0;
  bool warned_dropped_ = false;
};

}  // namespace accel
