#pragma once
// The Trainer's state and its parts, shared by trainer.cpp (the loop),
// trainer_evaluate.cpp and trainer_checkpoint.cpp.
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "accel/trainer/trainer.h"

namespace accel {

struct Trainer::Impl {
  TrainingArguments args;  // resolved
  std::unique_ptr<Accelerator> accelerator;
  Datasets train_dataset, eval_dataset;
  std::string main_input_name;  // ModelFunctions', for group_by_length's lengths
  std::optional<DataLoader<TensorDict>> train_loader, eval_loader;
  Erased model;
  std::vector<std::shared_ptr<TrainerCallback>> callbacks;  // DefaultFlowCallback first
  TrainerState state;
  TrainerControl control;
  std::shared_ptr<AcceleratedOptimizer> optimizer;
  std::shared_ptr<LRScheduler> scheduler;
  bool trained = false;
  /// The batch size the training loader was built with.
  int64_t train_batch_size = 0;
  bool trackers_started = false;

  // Loss bookkeeping between logs (Transformers' _tr_loss, a float32 sum
  // of the micro-batch losses on the device, and _total_loss_scalar).
  torch::Tensor tr_loss;
  double total_loss_scalar = 0;
  int64_t globalstep_last_logged = 0;

  // --- events -------------------------------------------------------------
  template <class F>
  void each(F f) {
    for (auto& c : callbacks) f(*c);
  }
  void on_step_begin() {
    control.should_log = control.should_evaluate = control.should_save = false;
    each([&](TrainerCallback& c) { c.on_step_begin(args, state, control); });
  }
  /// Records `logs` (with the epoch, and the tokens seen when counted; a
  /// training log, given the training's `start`, also the token speed).
  void log(Metrics logs, std::optional<std::chrono::steady_clock::time_point> start = std::nullopt);
  /// include_num_input_tokens_seen: adds the batch's tokens, summed over processes.
  void track_input_tokens(const TensorDict& batch);
  int64_t initial_tokens_seen = 0;

  /// The training loop (Transformers' _inner_training_loop) with batches
  /// of `batch_size` per process, resuming from `resume` when given.
  TrainOutput train_loop(const std::optional<std::filesystem::path>& resume, int64_t batch_size);
  /// auto_find_batch_size after an out-of-memory error: frees what the
  /// failed attempt held, prepares the model and loaders again (the
  /// training loader with `batch_size`) and starts from a fresh state.
  void restart_with_batch_size(int64_t batch_size);

  // --- trainer_evaluate.cpp ----------------------------------------------
  struct LoopOutput {
    torch::Tensor predictions, label_ids;
    Metrics metrics;  // prefixed, without the speeds
    int64_t num_samples = 0;
  };
  /// Transformers' evaluation_loop over a prepared loader: per-example
  /// losses and (when `keep_predictions`) predictions and labels,
  /// gathered without the last batch's repeats; compute_metrics on them.
  LoopOutput evaluation_loop(DataLoader<TensorDict>& loader, const std::string& prefix, bool keep_predictions);
  Metrics evaluate();
  PredictionOutput predict(const Datasets& test_dataset);

  // --- trainer_checkpoint.cpp ---------------------------------------------
  /// Saves checkpoint-<global_step>, updates best_model_checkpoint, rotates.
  void save_checkpoint();
  /// Whether `metrics` hold a new best value (and records it).
  bool update_best_metric(const Metrics& metrics);
  /// The folder to resume from ("last": the newest), checked to be a
  /// complete Trainer checkpoint.
  std::filesystem::path resolve_checkpoint(const std::string& which) const;
  void load_best_model();
  void save_model(const std::filesystem::path& dir);
};

/// The (unprepared) loader the Trainer uses for `ds`: training batches
/// (of `train_batch_size`, default per_device_train_batch_size) in the
/// order train_sampling_strategy names, or evaluation batches.
DataLoader<TensorDict> make_loader(const std::shared_ptr<Dataset<TensorDict>>& ds, const TrainingArguments& a,
                                   bool training, bool on_gpu, const std::string& main_input_name,
                                   std::optional<int64_t> train_batch_size = std::nullopt);

/// checkpoint-<n> folders of `dir`, oldest (lowest n) first; the best is
/// moved just before the newest so that rotation keeps both.
std::vector<std::filesystem::path> sorted_checkpoints(const std::filesystem::path& dir,
                                                      const std::optional<std::string>& best);
/// Deletes the oldest checkpoints beyond `limit`, never the newest or the best.
void rotate_checkpoints(const std::filesystem::path& dir, std::optional<int64_t> limit,
                        const std::optional<std::string>& best);

}  // namespace accel
