#pragma once
// Trainer: Transformers' training loop for any LibTorch model, on top of the
// Accelerator. Given a model, TrainingArguments and datasets of named
// tensors, train() runs the loop Transformers' Trainer runs (epochs or
// max_steps, gradient accumulation with a short last update per epoch,
// clipping, AdamW without decay on biases and norms, a warmup schedule),
// logs, evaluates and saves checkpoints on its schedule, keeps the best
// checkpoint, and resumes exactly from any checkpoint.
//
//   auto args =
//   accel::TrainingArguments().output_dir("out").max_steps(100).eval_strategy(accel::IntervalStrategy::steps);
//   accel::Trainer trainer(net, args, train_set, eval_set,
//                          accel::ModelFunctions<Net>().compute_loss([](auto& model, const accel::TensorDict& b) {
//                            return torch::mse_loss(model(b.at("x")), b.at("labels"));
//                          }));
//   trainer.train();
//   trainer.save_model();
//
// Checkpoints: output_dir/checkpoint-<global_step>/ holds an Accelerator
// save_state folder (model.safetensors, the optimizer, random states, the
// scheduler as custom_checkpoint_0, loader positions) plus
// trainer_state.json (Transformers' fields) and training_args.json; the
// last is written last, so a folder without it is not a checkpoint.
//
// What differs from Transformers, by design: the model's loss comes from a
// function the user gives (or the model's forward(TensorDict) returning the
// loss); predictions for compute_metrics from `predict`. Checkpoints hold
// safetensors and JSON, never pickles. Checkpoints are ordered by their
// step number (Transformers orders by mtime when the file system's times
// differ by a second or more).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/data/dataset.h"
#include "accel/trainer/neftune.h"
#include "accel/trainer/trainer_callback.h"
#include "accel/trainer/trainer_state.h"
#include "accel/trainer/training_arguments.h"
#include "accel/util/export.h"

namespace accel {

/// What evaluate() hands compute_metrics: every eval example's predictions
/// and labels, gathered from all processes (without the repeats that even
/// out the last batch), on the CPU.
struct ACCEL_API EvalPrediction {
  torch::Tensor predictions;
  torch::Tensor label_ids;
};
using ComputeMetrics = std::function<Metrics(const EvalPrediction&)>;

/// What predict() returns (Transformers' PredictionOutput): every example
/// of the dataset once, in order (under group_by_length: the evaluation
/// sampler's order), gathered from all processes, on the CPU.
/// Predictions and labels longer on some processes or batches than others
/// (dimension 1) are padded with -100 on the right.
struct ACCEL_API PredictionOutput {
  /// ModelFunctions::predict's output; undefined without one (or under
  /// prediction_loss_only).
  torch::Tensor predictions;
  /// The label_names entries (stacked when several); undefined when the
  /// dataset has none.
  torch::Tensor label_ids;
  /// test_loss (when the dataset has labels), compute_metrics' values,
  /// test_runtime and speeds, all "test_"-prefixed.
  Metrics metrics;
};

/// How the Trainer gets a loss and predictions out of the model.
template <class Holder>
struct ModelFunctions {
  using Model = PreparedModel<Holder>;
  using Function = std::function<torch::Tensor(Model&, const TensorDict&)>;
  /// The batch's mean loss (a 0-dim tensor). Unset: the model's
  /// forward(const TensorDict&) must return it.
  TORCH_ARG(Function, compute_loss) = nullptr;
  /// The batch's predictions (first dimension: the examples; the logits
  /// in Transformers' terms), for compute_metrics and predict(); needed
  /// when compute_metrics is set.
  TORCH_ARG(Function, predict) = nullptr;
  /// Metrics over the whole eval set; their names get the "eval_" prefix.
  TORCH_ARG(ComputeMetrics, compute_metrics) = nullptr;
  /// The batch entry whose elements include_num_input_tokens_seen counts
  /// (Transformers' model.main_input_name).
  TORCH_ARG(std::string, main_input_name) = "input_ids";
  /// The predictions at position i are for the label at i + 1 (a causal
  /// LM): label smoothing shifts the labels, as Transformers does for its
  /// causal LM classes.
  TORCH_ARG(bool, shift_labels) = false;
  /// Stores a hook in the model that its forward applies to the input
  /// embeddings' output (an empty hook: none); see neftune.h. Needed by
  /// neftune_noise_alpha: train() sets neftune_hook there and clears it
  /// when training ends, as Transformers adds and removes its forward hook.
  using SetEmbeddingsHook = std::function<void(Holder&, EmbeddingsHook)>;
  TORCH_ARG(SetEmbeddingsHook, set_input_embeddings_hook) = nullptr;
};

/// Transformers' rule: the parameters weight decay applies to are all but
/// those inside a LayerNorm and those whose lowercased dotted name matches
/// bias, layernorm, rmsnorm, a component "norm" or one ending in "_norm".
ACCEL_API std::vector<std::string> decay_parameter_names(const torch::nn::Module& model);

/// What train() returns.
struct ACCEL_API TrainOutput {
  int64_t global_step = 0;
  double training_loss = 0;
  Metrics metrics;
};

class ACCEL_API Trainer {
 public:
  using Datasets = std::shared_ptr<Dataset<TensorDict>>;
  using Callbacks = std::vector<std::shared_ptr<TrainerCallback>>;

  /// Seeds (args.seed) and builds the Accelerator from the arguments, then
  /// prepares the model and the loaders. `eval_dataset` may be null (then
  /// eval_strategy must be no). Throws std::invalid_argument for arguments
  /// TrainingArguments::resolved() refuses.
  template <Module Holder>
  Trainer(Holder model, TrainingArguments args, Datasets train_dataset, Datasets eval_dataset = nullptr,
          ModelFunctions<Holder> functions = {}, Callbacks callbacks = {})
      : Trainer(std::move(args), std::move(train_dataset), std::move(eval_dataset), std::move(callbacks),
                functions.main_input_name()) {
    auto prepared = std::make_shared<PreparedModel<Holder>>(accelerator().prepare_model(model));
    Erased e;
    e.module = model.ptr();
    e.core = prepared->core_ptr();
    e.reprepare = [this, prepared, model] {
      *prepared = accelerator().prepare_model(model);
      return prepared->core_ptr();
    };
    if (functions.compute_loss()) {
      e.loss = [prepared, f = functions.compute_loss()](const TensorDict& b) { return f(*prepared, b); };
    } else if constexpr (requires(typename Holder::ContainedType & m, const TensorDict& b) {
                           { m.forward(b) } -> std::convertible_to<torch::Tensor>;
                         }) {
      e.loss = [prepared](const TensorDict& b) -> torch::Tensor { return (*prepared)(b); };
    }
    if (functions.predict())
      e.predict = [prepared, f = functions.predict()](const TensorDict& b) { return f(*prepared, b); };
    e.compute_metrics = functions.compute_metrics();
    e.main_input_name = functions.main_input_name();
    e.shift_labels = functions.shift_labels();
    if (functions.set_input_embeddings_hook())
      e.set_embeddings_hook = [model, f = functions.set_input_embeddings_hook()](EmbeddingsHook hook) mutable {
        f(model, std::move(hook));
      };
    set_model(std::move(e));
  }
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Trains (once per Trainer). `resume_from_checkpoint`: a checkpoint
  /// folder, or "last" for the newest checkpoint-<n> in output_dir;
  /// without it, args.resume_from_checkpoint if set. Resuming restores the
  /// model, optimizer, scheduler, random states and trainer state, and
  /// skips the batches already trained on (unless ignore_data_skip).
  TrainOutput train(std::optional<std::string> resume_from_checkpoint = std::nullopt);
  /// Evaluates on the eval set: eval_loss (mean over examples), the
  /// metrics of compute_metrics, runtime and speed, all "eval_"-prefixed;
  /// logged and handed to the callbacks' on_evaluate.
  Metrics evaluate();
  /// Runs the model over `test_dataset` (Transformers' predict): the
  /// predictions, the labels and the metrics evaluate() would compute, with
  /// the "test_" prefix; batches of per_device_eval_batch_size, split
  /// across the processes. The loss needs every label_names entry in the
  /// batches; without labels, ModelFunctions::predict must be given.
  /// Not logged; handed to the callbacks' on_predict. The test loader is
  /// not part of checkpoints.
  PredictionOutput predict(Datasets test_dataset);
  /// Writes the model's weights (model.safetensors) into `dir` (default
  /// output_dir), from the main process.
  void save_model(const std::optional<std::string>& dir = std::nullopt);

  const TrainerState& state() const;
  const TrainerControl& control() const;
  const TrainingArguments& args() const;
  Accelerator& accelerator();
  /// The optimizer and scheduler train() built (null before).
  std::shared_ptr<AcceleratedOptimizer> optimizer() const;
  std::shared_ptr<LRScheduler> lr_scheduler() const;
  void add_callback(std::shared_ptr<TrainerCallback> callback);

 private:
  struct Erased {
    std::shared_ptr<torch::nn::Module> module;
    std::shared_ptr<PreparedModelCore> core;
    std::function<torch::Tensor(const TensorDict&)> loss;
    std::function<torch::Tensor(const TensorDict&)> predict;
    ComputeMetrics compute_metrics;
    std::string main_input_name;
    bool shift_labels = false;
    std::function<void(EmbeddingsHook)> set_embeddings_hook;
    /// Prepares the model again (after Accelerator::free_memory); returns the new core.
    std::function<std::shared_ptr<PreparedModelCore>()> reprepare;
  };
  struct Impl;
  std::unique_ptr<Impl> impl_;

  Trainer(TrainingArguments args, Datasets train_dataset, Datasets eval_dataset, Callbacks callbacks,
          std::string main_input_name);
  void set_model(Erased model);
};

}  // namespace accel
