// The default flow and early stopping, with Transformers' conditions
// (transformers/trainer_callback.py).
#include "accel/trainer/trainer_callback.h"

#include <cmath>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/util/check.h"

namespace accel {

void DefaultFlowCallback::on_step_end(const Args& args, TrainerState& state, TrainerControl& control) {
  const int64_t step = state.global_step;
  if (step == 1 && args.logging_first_step()) control.should_log = true;
  if (args.logging_strategy() == IntervalStrategy::steps && step % state.logging_steps == 0) control.should_log = true;
  const bool eval_steps = args.eval_strategy() == IntervalStrategy::steps;
  if (eval_steps && step % state.eval_steps == 0 && args.eval_delay() <= step) control.should_evaluate = true;
  const bool save_steps = args.save_strategy() == IntervalStrategy::steps;
  if (save_steps && state.save_steps > 0 && step % state.save_steps == 0) control.should_save = true;
  if (step >= state.max_steps) {
    control.should_training_stop = true;
    if (eval_steps && step % state.eval_steps != 0 && args.eval_delay() <= step) control.should_evaluate = true;
    if (save_steps) control.should_save = true;
  }
}

void DefaultFlowCallback::on_epoch_end(const Args& args, TrainerState& state, TrainerControl& control) {
  if (args.logging_strategy() == IntervalStrategy::epoch) control.should_log = true;
  if (args.eval_strategy() == IntervalStrategy::epoch && args.eval_delay() <= state.epoch)
    control.should_evaluate = true;
  if (args.save_strategy() == IntervalStrategy::epoch) control.should_save = true;
}

EarlyStoppingCallback::EarlyStoppingCallback(int64_t patience, double threshold)
    : patience_(patience), threshold_(threshold) {
  ACCEL_CHECK_ARG(patience >= 1, "EarlyStoppingCallback: patience = ", patience, ", expected >= 1");
  ACCEL_CHECK_ARG(std::isfinite(threshold) && threshold >= 0, "EarlyStoppingCallback: threshold = ", threshold,
                  ", expected >= 0");
}

void EarlyStoppingCallback::on_train_begin(const Args& args, TrainerState&, TrainerControl&) {
  ACCEL_CHECK_ARG(args.metric_for_best_model().has_value(),
                  "EarlyStoppingCallback needs metric_for_best_model (or load_best_model_at_end)");
  ACCEL_CHECK_ARG(args.eval_strategy() != IntervalStrategy::no,
                  "EarlyStoppingCallback needs evaluations: eval_strategy is no");
}

void EarlyStoppingCallback::on_evaluate(const Args& args, TrainerState& state, TrainerControl& control,
                                        const Metrics& metrics) {
  auto it = metrics.find(args.best_metric_key());
  if (it == metrics.end()) return;  // the Trainer has already refused a missing metric by name
  const double value = it->second;
  const bool better =
      !state.best_metric ||
      ((args.greater_is_better().value_or(false) ? value > *state.best_metric : value < *state.best_metric) &&
       std::abs(value - *state.best_metric) > threshold_);
  counter_ = better ? 0 : counter_ + 1;
  if (counter_ >= patience_) control.should_training_stop = true;
}

std::optional<std::pair<std::string, std::string>> EarlyStoppingCallback::exported_state() const {
  nlohmann::json j = {{"args", {{"early_stopping_patience", patience_}, {"early_stopping_threshold", threshold_}}},
                      {"attributes", {{"early_stopping_patience_counter", counter_}}}};
  return std::make_pair(std::string("EarlyStoppingCallback"), j.dump());
}

}  // namespace accel
