#pragma once
// TrainerCallback: code the Trainer calls at each point of the loop, with
// Transformers' event names. A callback reads the arguments and state and
// steers through the control (stop training, force a save or an
// evaluation at this step):
//
//   struct StopAt : accel::TrainerCallback {
//     void on_step_end(const accel::TrainingArguments&, accel::TrainerState& s, accel::TrainerControl& c) override {
//       if (s.global_step == 10) c.should_training_stop = true;
//     }
//   };
//
// Callbacks run in the order given, after the default flow
// (DefaultFlowCallback: Transformers' logging/evaluation/saving schedule).
#include <cstdint>
#include <optional>
#include <string>

#include "accel/trainer/trainer_state.h"
#include "accel/trainer/training_arguments.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  using Args = TrainingArguments;
  virtual void on_init_end(const Args&, TrainerState&, TrainerControl&) {}
  virtual void on_train_begin(const Args&, TrainerState&, TrainerControl&) {}
  virtual void on_train_end(const Args&, TrainerState&, TrainerControl&) {}
  virtual void on_epoch_begin(const Args&, TrainerState&, TrainerControl&) {}
  virtual void on_epoch_end(const Args&, TrainerState&, TrainerControl&) {}
  /// Before the first batch of an update.
  virtual void on_step_begin(const Args&, TrainerState&, TrainerControl&) {}
  /// After a batch that only accumulated gradients.
  virtual void on_substep_end(const Args&, TrainerState&, TrainerControl&) {}
  /// Gradients are final (clipped) and the optimizer is about to step.
  virtual void on_pre_optimizer_step(const Args&, TrainerState&, TrainerControl&) {}
  virtual void on_optimizer_step(const Args&, TrainerState&, TrainerControl&) {}
  /// After an update; global_step counts it.
  virtual void on_step_end(const Args&, TrainerState&, TrainerControl&) {}
  virtual void on_evaluate(const Args&, TrainerState&, TrainerControl&, const Metrics& /*metrics*/) {}
  /// After each batch of evaluate() and predict().
  virtual void on_prediction_step(const Args&, TrainerState&, TrainerControl&) {}
  /// At the end of predict(), with its "test_" metrics.
  virtual void on_predict(const Args&, TrainerState&, TrainerControl&, const Metrics& /*metrics*/) {}
  virtual void on_save(const Args&, TrainerState&, TrainerControl&) {}
  virtual void on_log(const Args&, TrainerState&, TrainerControl&, const Metrics& /*logs*/) {}

  /// A callback with state to keep in trainer_state.json's
  /// stateful_callbacks: its class name and the state as JSON text.
  virtual std::optional<std::pair<std::string, std::string>> exported_state() const { return std::nullopt; }
};

/// Transformers' schedule: log every logging_steps (and at step 1 with
/// logging_first_step), evaluate every eval_steps from eval_delay on, save
/// every save_steps, and at max_steps stop, evaluate and save if the
/// schedule did not already; with the epoch strategies, at each epoch end.
class ACCEL_API DefaultFlowCallback : public TrainerCallback {
 public:
  void on_step_end(const Args& args, TrainerState& state, TrainerControl& control) override;
  void on_epoch_end(const Args& args, TrainerState& state, TrainerControl& control) override;
};

/// Stops training when metric_for_best_model has not improved (strictly,
/// by more than `threshold`) on `patience` evaluations in a row, compared
/// with the best value so far (Transformers' EarlyStoppingCallback).
/// train() refuses it without metric_for_best_model or evaluations.
class ACCEL_API EarlyStoppingCallback : public TrainerCallback {
 public:
  explicit EarlyStoppingCallback(int64_t patience = 1, double threshold = 0.0);
  void on_train_begin(const Args& args, TrainerState& state, TrainerControl& control) override;
  void on_evaluate(const Args& args, TrainerState& state, TrainerControl& control, const Metrics& metrics) override;
  std::optional<std::pair<std::string, std::string>> exported_state() const override;
  /// Evaluations in a row without improvement.
  int64_t counter() const { return counter_; }

 private:
  int64_t patience_;
  double threshold_;
  int64_t counter_ = 0;
};

}  // namespace accel
