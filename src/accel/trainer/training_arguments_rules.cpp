// Transformers' rules on TrainingArguments (its __post_init__ and
// _validate_args): the defaults that depend on other arguments, and the
// combinations it refuses, plus the ones accel refuses because it would
// otherwise have to ignore them.
#include <cmath>
#include <stdexcept>

#include "accel/trainer/training_arguments.h"
#include "accel/util/check.h"

namespace accel {

namespace {

// An interval of steps: a count (whole when >= 1) or a ratio below 1.
void check_interval(const char* name, double v) {
  ACCEL_CHECK_ARG(std::isfinite(v) && v > 0, "TrainingArguments: ", name, " = ", v,
                  ", expected a step count or a ratio of max_steps in (0, 1)");
  ACCEL_CHECK_ARG(v < 1 || v == std::floor(v), "TrainingArguments: ", name, " = ", v,
                  " must be an integer when it is 1 or more");
}

}  // namespace

TrainingArguments TrainingArguments::resolved() const {
  TrainingArguments a = *this;
  ACCEL_CHECK_ARG(!a.output_dir().empty(), "TrainingArguments: output_dir is empty");
  ACCEL_CHECK_ARG(a.per_device_train_batch_size() > 0,
                  "TrainingArguments: per_device_train_batch_size = ", a.per_device_train_batch_size(),
                  ", expected > 0");
  ACCEL_CHECK_ARG(a.per_device_eval_batch_size() > 0,
                  "TrainingArguments: per_device_eval_batch_size = ", a.per_device_eval_batch_size(), ", expected > 0");
  ACCEL_CHECK_ARG(a.gradient_accumulation_steps() >= 1,
                  "TrainingArguments: gradient_accumulation_steps = ", a.gradient_accumulation_steps(),
                  ", expected >= 1");
  ACCEL_CHECK_ARG(a.max_steps() > 0 || a.num_train_epochs() > 0,
                  "TrainingArguments: num_train_epochs = ", a.num_train_epochs(), " with max_steps = ", a.max_steps(),
                  ": one of them must be positive to train");
  ACCEL_CHECK_ARG(a.optim() == "adamw_torch" || a.optim() == "adamw_torch_fused", "TrainingArguments: optim = '",
                  a.optim(), "', accel's Trainer implements adamw_torch and adamw_torch_fused");
  parse_scheduler_type(a.lr_scheduler_type());  // throws naming the known types
  ACCEL_CHECK_ARG(a.learning_rate() >= 0, "TrainingArguments: learning_rate = ", a.learning_rate(), ", expected >= 0");
  ACCEL_CHECK_ARG(a.weight_decay() >= 0, "TrainingArguments: weight_decay = ", a.weight_decay(), ", expected >= 0");
  ACCEL_CHECK_ARG(a.max_grad_norm() >= 0, "TrainingArguments: max_grad_norm = ", a.max_grad_norm(),
                  ", expected >= 0 (0: no clipping)");
  ACCEL_CHECK_ARG(a.warmup_steps() >= 0, "TrainingArguments: warmup_steps = ", a.warmup_steps(), ", expected >= 0");
  ACCEL_CHECK_ARG(a.warmup_steps() < 1 || a.warmup_steps() == std::floor(a.warmup_steps()),
                  "TrainingArguments: warmup_steps = ", a.warmup_steps(), " must be an integer when it is 1 or more");
  ACCEL_CHECK_ARG(a.warmup_ratio() >= 0 && a.warmup_ratio() <= 1,
                  "TrainingArguments: warmup_ratio = ", a.warmup_ratio(), ", expected in [0, 1]");
  ACCEL_CHECK_ARG(a.warmup_ratio() == 0 || a.warmup_steps() == 0,
                  "TrainingArguments: warmup_ratio = ", a.warmup_ratio(), " and warmup_steps = ", a.warmup_steps(),
                  " are both set; set one");
  ACCEL_CHECK_ARG(!(a.fp16() && a.bf16()), "TrainingArguments: fp16 and bf16 are both set; at most one can be");
  ACCEL_CHECK_ARG(a.dataloader_num_workers() >= 0,
                  "TrainingArguments: dataloader_num_workers = ", a.dataloader_num_workers(), ", expected >= 0");
  ACCEL_CHECK_ARG(!a.dataloader_prefetch_factor() || a.dataloader_num_workers() > 0,
                  "TrainingArguments: dataloader_prefetch_factor = ", a.dataloader_prefetch_factor().value_or(0),
                  " can only be set with dataloader_num_workers > 0");
  ACCEL_CHECK_ARG(!a.save_total_limit() || *a.save_total_limit() >= 0,
                  "TrainingArguments: save_total_limit = ", a.save_total_limit().value_or(0), ", expected >= 0");
  ACCEL_CHECK_ARG(a.eval_delay() >= 0, "TrainingArguments: eval_delay = ", a.eval_delay(), ", expected >= 0");
  ACCEL_CHECK_ARG(a.label_smoothing_factor() >= 0 && a.label_smoothing_factor() < 1,
                  "TrainingArguments: label_smoothing_factor = ", a.label_smoothing_factor(), ", expected in [0, 1)");
  ACCEL_CHECK_ARG(!a.eval_accumulation_steps() || *a.eval_accumulation_steps() >= 1,
                  "TrainingArguments: eval_accumulation_steps = ", a.eval_accumulation_steps().value_or(0),
                  ", expected >= 1");
  ACCEL_CHECK_ARG(!a.neftune_noise_alpha() || *a.neftune_noise_alpha() > 0,
                  "TrainingArguments: neftune_noise_alpha = ", a.neftune_noise_alpha().value_or(0),
                  ", expected a positive number (or unset: no noise)");
  if (a.torch_compile()) {
    ACCEL_CHECK_ARG(a.gradient_accumulation_steps() == 1,
                    "TrainingArguments: torch_compile captures one whole step "
                    "as a CUDA graph, which needs gradient_accumulation_steps = 1 (got ",
                    a.gradient_accumulation_steps(), ")");
    ACCEL_CHECK_ARG(!a.fp16(),
                    "TrainingArguments: torch_compile cannot capture fp16's loss scaling (it decides on "
                    "the host); use bf16");
    ACCEL_CHECK_ARG(a.optim() == "adamw_torch_fused",
                    "TrainingArguments: torch_compile needs optim = "
                    "adamw_torch_fused (a captured step runs the fused optimizer kernels), got '",
                    a.optim(), "'");
  }
  const auto& sampling = a.train_sampling_strategy();
  ACCEL_CHECK_ARG(sampling != "batch_rebalance",
                  "TrainingArguments: train_sampling_strategy = 'batch_rebalance' is not supported by accel's Trainer "
                  "(expected random, sequential or group_by_length)");
  ACCEL_CHECK_ARG(sampling == "random" || sampling == "sequential" || sampling == "group_by_length",
                  "TrainingArguments: train_sampling_strategy = '", sampling,
                  "', expected one of random, sequential, group_by_length");
  ACCEL_CHECK_ARG(!a.length_column_name().empty(), "TrainingArguments: length_column_name is empty");
  const auto& tokens = a.include_num_input_tokens_seen();
  ACCEL_CHECK_ARG(tokens == "no" || tokens == "all" || tokens == "non_padding",
                  "TrainingArguments: include_num_input_tokens_seen = '", tokens,
                  "', expected one of no, all, non_padding");
  // Transformers: the old name counts only when the new one is unset;
  // afterwards both hold the same value.
  if (!a.activation_checkpointing()) a.activation_checkpointing(a.gradient_checkpointing().value_or(false));
  a.gradient_checkpointing(a.activation_checkpointing());
  for (const auto& r : a.report_to()) ACCEL_CHECK_ARG(!r.empty(), "TrainingArguments: report_to holds an empty name");
  if (a.report_to().size() == 1 && a.report_to()[0] == "none") a.report_to({});

  if (a.logging_strategy() == IntervalStrategy::steps) check_interval("logging_steps", a.logging_steps());
  if (a.eval_strategy() == IntervalStrategy::steps && (!a.eval_steps() || *a.eval_steps() == 0))
    a.eval_steps(a.logging_steps());
  if (a.eval_strategy() == IntervalStrategy::steps) check_interval("eval_steps", *a.eval_steps());
  if (a.save_strategy() == IntervalStrategy::steps) check_interval("save_steps", a.save_steps());

  if (a.load_best_model_at_end() && !a.metric_for_best_model()) a.metric_for_best_model("loss");
  if (a.metric_for_best_model() && !a.greater_is_better()) {
    const std::string& m = *a.metric_for_best_model();
    a.greater_is_better(!(m.size() >= 4 && m.compare(m.size() - 4, 4, "loss") == 0));
  }
  if (a.load_best_model_at_end()) {
    ACCEL_CHECK_ARG(a.eval_strategy() == a.save_strategy(),
                    "TrainingArguments: load_best_model_at_end needs the save and eval strategies to match, but "
                    "eval_strategy = ",
                    to_string(a.eval_strategy()), " and save_strategy = ", to_string(a.save_strategy()));
    ACCEL_CHECK_ARG(a.eval_strategy() != IntervalStrategy::no,
                    "TrainingArguments: load_best_model_at_end needs evaluations (eval_strategy is no)");
    if (a.eval_strategy() == IntervalStrategy::steps) {
      const double save = a.save_steps(), eval = *a.eval_steps();
      const bool ratio = save < 1 || eval < 1;
      ACCEL_CHECK_ARG(!ratio || (save < 1 && eval < 1),
                      "TrainingArguments: load_best_model_at_end needs save_steps a multiple of eval_steps, which "
                      "mixing a ratio and a count cannot guarantee (save_steps ",
                      save, ", eval_steps ", eval, ")");
      const auto scaled = [&](double v) { return std::llround(ratio ? v * 1e6 : v); };
      ACCEL_CHECK_ARG(scaled(save) % scaled(eval) == 0,
                      "TrainingArguments: load_best_model_at_end needs save_steps a multiple of eval_steps, but "
                      "save_steps = ",
                      save, " and eval_steps = ", eval);
    }
  }
  return a;
}

int64_t TrainingArguments::get_warmup_steps(int64_t num_training_steps) const {
  if (warmup_steps() >= 1) return static_cast<int64_t>(warmup_steps());
  if (warmup_steps() > 0) return static_cast<int64_t>(std::ceil(num_training_steps * warmup_steps()));
  return static_cast<int64_t>(std::ceil(num_training_steps * warmup_ratio()));
}

std::string TrainingArguments::best_metric_key() const {
  const std::string m = metric_for_best_model().value_or("loss");
  return m.rfind("eval_", 0) == 0 ? m : "eval_" + m;
}

}  // namespace accel
