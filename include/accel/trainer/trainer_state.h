#pragma once
// TrainerState and TrainerControl: what the Trainer knows about the run
// (saved in each checkpoint as trainer_state.json, with Transformers' field
// names and layout: json.dumps(indent=2, sort_keys=True)) and the switches
// callbacks flip to steer it. A step is one optimizer update: with
// gradient_accumulation_steps = n it takes n batches.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "accel/util/export.h"

namespace accel {

/// Named values: a log entry, or evaluation metrics ("eval_loss", ...).
using Metrics = std::map<std::string, double>;

struct ACCEL_API TrainerState {
  /// Epochs done, with the fraction of the current one.
  double epoch = 0;
  int64_t global_step = 0;
  int64_t max_steps = 0;
  /// The intervals in steps (ratios of max_steps resolved).
  int64_t logging_steps = 500;
  int64_t eval_steps = 500;
  int64_t save_steps = 500;
  std::optional<int64_t> train_batch_size;
  int64_t num_train_epochs = 0;
  int64_t num_input_tokens_seen = 0;
  double total_flos = 0;
  /// Every log entry (training losses, evaluations, the final summary),
  /// each with its "step" (and "epoch").
  std::vector<Metrics> log_history;
  std::optional<double> best_metric;
  std::optional<int64_t> best_global_step;
  std::optional<std::string> best_model_checkpoint;
  bool is_local_process_zero = true;
  bool is_world_process_zero = true;
  bool is_hyper_param_search = false;
  /// Each stateful callback's state by class name, as JSON text.
  std::map<std::string, std::string> stateful_callbacks;

  /// Transformers' trainer_state.json text.
  std::string to_json() const;
  /// Reads trainer_state.json text; `source` names it in errors
  /// (std::invalid_argument for a field of the wrong type or a missing one).
  static TrainerState from_json(const std::string& text, const std::string& source);
  static TrainerState load(const std::filesystem::path& path);
};

/// Set by callbacks (and the default flow) to steer the loop. The Trainer
/// clears should_log/should_evaluate/should_save at each step's start and
/// after it acted on them, should_epoch_stop at each epoch's start.
struct ACCEL_API TrainerControl {
  bool should_training_stop = false;
  bool should_epoch_stop = false;
  bool should_save = false;
  bool should_evaluate = false;
  bool should_log = false;

  /// {"args": {...the flags...}, "attributes": {}} as Transformers stores it.
  std::string state_json() const;
};

}  // namespace accel
