#pragma once
// TrainingArguments: the settings of accel::Trainer under Transformers'
// names and with its defaults (transformers 5.x TrainingArguments), settable
// in code (chained setters), from command-line flags as Python scripts take
// them, and from a JSON file:
//
//   auto args = accel::TrainingArguments().output_dir("out").learning_rate(3e-4).max_steps(1000);
//   auto args = accel::TrainingArguments::from_flags({"--learning_rate", "3e-4", "--bf16"});
//   auto args = accel::TrainingArguments::from_json_file("args.json");
//
// Every argument here works. Transformers' other arguments are known by
// name: flags or JSON keys that set one of them to anything but
// Transformers' default are refused, naming it (a JSON written by Python's
// TrainingArguments.to_json_string() loads when it uses only what accel
// implements). Unknown names and bad values throw std::invalid_argument
// naming them.
//
// The interval arguments (logging_steps, eval_steps, save_steps) and
// warmup_steps take a count, or a ratio of max_steps when below 1, as in
// Transformers.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "accel/optim/schedules.h"
#include "accel/util/export.h"

namespace accel {

/// When to log, evaluate or save: never, every N steps, or at each epoch end.
enum class IntervalStrategy { no, steps, epoch };
ACCEL_API IntervalStrategy parse_interval_strategy(const std::string& name, const std::string& argument);
ACCEL_API std::string to_string(IntervalStrategy strategy);

/// Transformers' AcceleratorConfig: how the Trainer's Accelerator prepares
/// its loaders (accelerator_options.h has each one). As JSON: an object of
/// these names, or (from a flag) a JSON text or a path to a JSON file.
/// Transformers' gradient_accumulation_kwargs and use_configured_state are
/// accepted at their defaults (null, false) only.
struct ACCEL_API AcceleratorConfig {
  TORCH_ARG(bool, split_batches) = false;
  TORCH_ARG(std::optional<bool>, dispatch_batches) = std::nullopt;
  TORCH_ARG(bool, even_batches) = true;
  /// accel's samplers always draw from a seed; false is refused.
  TORCH_ARG(bool, use_seedable_sampler) = true;
  TORCH_ARG(bool, non_blocking) = false;
};

struct ACCEL_API TrainingArguments {
  // --- where -----------------------------------------------------------
  /// checkpoint-<step>/ folders and save_model() go here.
  TORCH_ARG(std::string, output_dir) = "trainer_output";
  /// A checkpoint folder that train() resumes from when its call names none.
  TORCH_ARG(std::optional<std::string>, resume_from_checkpoint) = std::nullopt;

  // --- batches and steps -------------------------------------------------
  TORCH_ARG(int64_t, per_device_train_batch_size) = 8;
  TORCH_ARG(int64_t, per_device_eval_batch_size) = 8;
  /// Batches per optimizer step; the last step of an epoch takes what is left.
  TORCH_ARG(int64_t, gradient_accumulation_steps) = 1;
  /// Used when max_steps <= 0 (a fraction runs part of the last epoch).
  TORCH_ARG(double, num_train_epochs) = 3.0;
  /// Optimizer steps to train; > 0 overrides num_train_epochs.
  TORCH_ARG(int64_t, max_steps) = -1;

  // --- optimizer and schedule -------------------------------------------
  /// "adamw_torch" or "adamw_torch_fused" (both AdamW; the fused one uses
  /// ATen's fused kernel on CUDA).
  TORCH_ARG(std::string, optim) = "adamw_torch_fused";
  TORCH_ARG(double, learning_rate) = 5e-5;
  /// Not applied to biases, LayerNorm parameters and parameters whose name
  /// says norm (Transformers' rule, see decay_parameter_names).
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(double, adam_beta1) = 0.9;
  TORCH_ARG(double, adam_beta2) = 0.999;
  TORCH_ARG(double, adam_epsilon) = 1e-8;
  /// Clip the global gradient norm to this; 0 turns clipping off.
  TORCH_ARG(double, max_grad_norm) = 1.0;
  /// One of Transformers' LambdaLR schedules (optim/schedules.h).
  TORCH_ARG(std::string, lr_scheduler_type) = "linear";
  TORCH_ARG(SchedulerKwargs, lr_scheduler_kwargs) = {};
  /// Warmup steps: a count, or below 1 a ratio of the training steps.
  TORCH_ARG(double, warmup_steps) = 0;
  /// Transformers 4.x's name for a warmup ratio (used when warmup_steps is 0).
  TORCH_ARG(double, warmup_ratio) = 0;

  // --- logging -----------------------------------------------------------
  TORCH_ARG(IntervalStrategy, logging_strategy) = IntervalStrategy::steps;
  TORCH_ARG(double, logging_steps) = 500;
  TORCH_ARG(bool, logging_first_step) = false;
  /// A NaN or inf micro-batch loss is logged as the running mean instead.
  TORCH_ARG(bool, logging_nan_inf_filter) = true;
  /// Trackers (Accelerator log_with names: "tensorboard", "all"); empty or
  /// "none": no tracker.
  TORCH_ARG(std::vector<std::string>, report_to) = {};
  /// Where file trackers write (default: output_dir/runs).
  TORCH_ARG(std::optional<std::string>, logging_dir) = std::nullopt;
  /// The trackers' run name (default: "trainer").
  TORCH_ARG(std::optional<std::string>, run_name) = std::nullopt;
  /// No progress bar. Transformers' default (None) shows one unless its
  /// logging level is above WARN; here: shown unless this is set (or the
  /// environment turns bars off, see tracking/progress.h).
  TORCH_ARG(bool, disable_tqdm) = false;

  // --- evaluation --------------------------------------------------------
  TORCH_ARG(IntervalStrategy, eval_strategy) = IntervalStrategy::no;
  /// Default: logging_steps.
  TORCH_ARG(std::optional<double>, eval_steps) = std::nullopt;
  /// No evaluation before this step (or epoch, under the epoch strategy).
  TORCH_ARG(double, eval_delay) = 0;
  /// Names of the batch entries that hold labels (for compute_metrics).
  TORCH_ARG(std::vector<std::string>, label_names) = {"labels"};
  /// Evaluate only the loss even when compute_metrics is given.
  TORCH_ARG(bool, prediction_loss_only) = false;
  /// Evaluate once before the first training step (not counted for the best model).
  TORCH_ARG(bool, eval_on_start) = false;
  /// Transformers moves the gathered predictions to the CPU every this
  /// many batches; accel's evaluation moves them after every batch, which
  /// honours any value (a count >= 1).
  TORCH_ARG(std::optional<int64_t>, eval_accumulation_steps) = std::nullopt;

  // --- loss --------------------------------------------------------------
  /// Transformers' LabelSmoother in place of the model's loss, for batches
  /// with "labels" (class indices, -100 ignored) in training and
  /// evaluation: (1 - f) * NLL + f * the mean over classes of -log p.
  /// Needs ModelFunctions::predict (the logits); see label_smoother.h.
  TORCH_ARG(double, label_smoothing_factor) = 0.0;
  /// Count the input tokens trained on (ModelFunctions::main_input_name,
  /// summed over processes) into TrainerState::num_input_tokens_seen, and
  /// log it with every entry (the training logs also get train_runtime and
  /// train_tokens_per_second): "no", "all", or "non_padding" (the sum of
  /// the batch's "attention_mask"; all tokens without one). JSON true and
  /// false mean "all" and "no".
  TORCH_ARG(std::string, include_num_input_tokens_seen) = "no";
  /// NEFTune: uniform noise of bound alpha / sqrt(L * d) added to the
  /// input embeddings' output in training (not in evaluation); the model
  /// must take the hook (ModelFunctions::set_input_embeddings_hook,
  /// neftune.h). Unset: no noise.
  TORCH_ARG(std::optional<double>, neftune_noise_alpha) = std::nullopt;

  // --- checkpoints -------------------------------------------------------
  TORCH_ARG(IntervalStrategy, save_strategy) = IntervalStrategy::steps;
  TORCH_ARG(double, save_steps) = 500;
  /// Keep at most this many checkpoint folders (the newest and the best
  /// are never deleted).
  TORCH_ARG(std::optional<int64_t>, save_total_limit) = std::nullopt;
  /// Checkpoints hold the model and trainer_state.json only (no resume).
  TORCH_ARG(bool, save_only_model) = false;
  TORCH_ARG(bool, load_best_model_at_end) = false;
  /// A key of the evaluation metrics ("eval_" is prefixed when missing);
  /// "loss" when load_best_model_at_end is set.
  TORCH_ARG(std::optional<std::string>, metric_for_best_model) = std::nullopt;
  /// Default: false for a metric whose name ends in "loss", else true.
  TORCH_ARG(std::optional<bool>, greater_is_better) = std::nullopt;
  /// On resume, start the interrupted epoch from its first batch.
  TORCH_ARG(bool, ignore_data_skip) = false;

  // --- memory ------------------------------------------------------------
  /// Recompute the forward of every accel::Unit of the model in backward
  /// instead of keeping its activations (unit/unit.h); a model without
  /// units is refused. Unset: gradient_checkpointing's value.
  TORCH_ARG(std::optional<bool>, activation_checkpointing) = std::nullopt;
  /// Transformers' deprecated alias of activation_checkpointing (resolved()
  /// makes the two agree).
  TORCH_ARG(std::optional<bool>, gradient_checkpointing) = std::nullopt;
  /// On an out-of-memory error (CUDA's, the CPU allocator's, cuDNN's
  /// CUDNN_STATUS_NOT_SUPPORTED: accel::should_reduce_batch_size), restart
  /// training from the beginning with int(0.9 * the batch size) per
  /// process, until one fits (Transformers' and Accelerate's
  /// find_executable_batch_size); at 0 it gives up with an error. The
  /// batch found is TrainerState::train_batch_size, and a resumed run starts
  /// from its checkpoint's. Other errors pass through unchanged. Every
  /// process must fail alike (an error on one rank only leaves the others
  /// waiting, as in Transformers).
  TORCH_ARG(bool, auto_find_batch_size) = false;
  /// The C++ counterpart of torch.compile: the whole training step
  /// (forward, backward, clipping, the optimizer step) recorded once as a
  /// CUDA graph and replayed (Accelerator::capture_step, graph/
  /// captured_step.h). Needs gradient_accumulation_steps 1, optim
  /// adamw_torch_fused, no fp16, one process on a GPU, and batches of one
  /// shape (a short last batch is refused: set dataloader_drop_last). On
  /// the CPU the same step runs eagerly, with the same results.
  TORCH_ARG(bool, torch_compile) = false;

  // --- randomness, precision, data ----------------------------------------
  TORCH_ARG(int64_t, seed) = 42;
  /// The shuffling seed (default: seed).
  TORCH_ARG(std::optional<int64_t>, data_seed) = std::nullopt;
  /// LibTorch's deterministic algorithms (set_seed's deterministic).
  TORCH_ARG(bool, full_determinism) = false;
  TORCH_ARG(bool, bf16) = false;
  TORCH_ARG(bool, fp16) = false;
  TORCH_ARG(bool, use_cpu) = false;
  TORCH_ARG(bool, dataloader_drop_last) = false;
  TORCH_ARG(int64_t, dataloader_num_workers) = 0;
  /// Only with workers (default then: the loader's 2).
  TORCH_ARG(std::optional<int64_t>, dataloader_prefetch_factor) = std::nullopt;
  TORCH_ARG(bool, dataloader_pin_memory) = true;
  TORCH_ARG(bool, dataloader_persistent_workers) = false;
  TORCH_ARG(AcceleratorConfig, accelerator_config) = {};
  /// The training order: "random" (reshuffled each epoch from data_seed),
  /// "sequential", or "group_by_length" (LengthGroupedSampler over batches
  /// of per_device_train_batch_size * gradient_accumulation_steps; the
  /// evaluation and test loaders are then grouped by length too, with
  /// per_device_eval_batch_size and the same order at every evaluation).
  /// Transformers' "batch_rebalance" is refused by name.
  TORCH_ARG(std::string, train_sampling_strategy) = "random";
  /// Under group_by_length, an example's length is its entry of this name
  /// (one value), else the length (first dimension) of its
  /// ModelFunctions::main_input_name entry ("input_ids").
  TORCH_ARG(std::string, length_column_name) = "length";

 public:  // TORCH_ARG leaves the section private
  /// `--name value`, `--name=value`, a bare `--flag` (true) and
  /// `--no_flag` (false) for booleans, as HfArgumentParser reads them.
  static TrainingArguments from_flags(const std::vector<std::string>& flags);
  static TrainingArguments from_flags(int argc, const char* const* argv);
  /// A JSON object of argument names to values.
  static TrainingArguments from_json_file(const std::filesystem::path& path);
  static TrainingArguments from_json(const std::string& text);
  /// Every argument as a JSON object (what checkpoints store).
  std::string to_json_string() const;

  /// Transformers' __post_init__ rules: eval_steps defaults to
  /// logging_steps, metric_for_best_model to "loss" under
  /// load_best_model_at_end, greater_is_better from the metric's name; and
  /// its checks (load_best_model_at_end needs matching eval and save
  /// strategies and save_steps a multiple of eval_steps, fp16 and bf16
  /// exclusive, counts positive, ...). Throws std::invalid_argument naming
  /// the value. The Trainer works on the resolved copy.
  TrainingArguments resolved() const;

  /// warmup_steps, or a ratio of `num_training_steps` (ceil) when below 1;
  /// else warmup_ratio of it.
  int64_t get_warmup_steps(int64_t num_training_steps) const;
  /// metric_for_best_model with the "eval_" prefix (resolved arguments).
  std::string best_metric_key() const;
};

/// Transformers' argument names that accel's Trainer does not implement,
/// each with Transformers' default as JSON text ("null", "false", "0", ...).
ACCEL_API const std::vector<std::pair<std::string, std::string>>& refused_training_arguments();

}  // namespace accel
