#pragma once
// GeneralTracker: what an experiment tracker does for a run, as Accelerate's
// GeneralTracker. Accelerator::init_trackers starts the trackers named by
// AcceleratorOptions::log_with (and any the user built), log() hands each
// the values of a step, end_training() finishes them.
//
// A tracker of your own implements log() and whatever else it needs:
//
//   struct PrintTracker : accel::GeneralTracker {
//     std::string name() const override { return "print"; }
//     void log(const accel::LogValues& values, std::optional<int64_t> step) override {
//       for (const auto& [key, value] : values)
//         if (auto* x = std::get_if<double>(&value)) std::printf("%s %g\n", key.c_str(), *x);
//     }
//   };
//   accel::Accelerator acc(accel::AcceleratorOptions().trackers({std::make_shared<PrintTracker>()}));
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <ATen/core/Tensor.h>

#include "accel/util/export.h"

namespace accel {

/// One entry of a run's configuration (init_trackers' config): the
/// hyperparameters TensorBoard's HPARAMS tab and MLflow's params show.
using ConfigValue = std::variant<bool, int64_t, double, std::string>;
/// In the order given.
using TrackerConfig = std::vector<std::pair<std::string, ConfigValue>>;

/// A value logged at a step. A number is a scalar; a string is text; a map
/// of numbers is several scalars drawn on one chart (TensorBoard's
/// add_scalars); a tensor is a histogram of its values. Non-finite numbers
/// are logged as they are (TensorBoard draws NaN and infinities).
using LogValue = std::variant<int64_t, double, std::string, std::map<std::string, double>, at::Tensor>;
/// In the order given: {{"loss", 0.25}, {"lr", 3e-4}, {"note", "warm-up"}}.
using LogValues = std::vector<std::pair<std::string, LogValue>>;

class ACCEL_API GeneralTracker {
 public:
  virtual ~GeneralTracker();

  /// The name log_with and get_tracker use ("tensorboard").
  virtual std::string name() const = 0;
  /// Whether only the main process runs it (the default, as Accelerate):
  /// on the other processes init_trackers does not start it and log()
  /// passes it by.
  virtual bool main_process_only() const { return true; }

  /// Called once by init_trackers, before anything is logged: open the run.
  /// An error here (an unwritable folder, a server that refuses the run)
  /// stops init_trackers, so training does not start without its records.
  virtual void start() {}
  /// The run's configuration, once, after start().
  virtual void store_init_configuration(const TrackerConfig& config) {}
  /// The values of one step; `step` unset: the tracker's own count. Errors
  /// thrown here do not stop training: the Accelerator reports the first
  /// one of each tracker and goes on.
  virtual void log(const LogValues& values, std::optional<int64_t> step) = 0;
  /// Close the run; everything logged is written when it returns.
  virtual void finish() {}
};

}  // namespace accel
