// Trainer::evaluate and Trainer::predict: Transformers' evaluation_loop.
// Each batch's mean loss counts once per example; every rank's losses,
// predictions and labels are gathered without the repeats that even out
// the last batch (gather_for_metrics); predictions and labels of different
// lengths (dimension 1) are padded with -100 across ranks and batches;
// non-finite losses are left out of the mean (logging_nan_inf_filter).
#include <chrono>
#include <cmath>

#include "accel/trainer/trainer_impl.h"
#include "accel/util/check.h"

namespace accel {

namespace {

constexpr double kPadIndex = -100;

// Transformers' torch_pad_and_concatenate, over a list: concatenated on
// dimension 0, dimension 1 padded to the longest with -100.
torch::Tensor pad_and_cat(const std::vector<torch::Tensor>& parts) {
  if (parts.empty()) return {};
  if (parts[0].dim() < 2) return torch::cat(parts);
  int64_t longest = 0;
  for (const auto& p : parts) longest = std::max(longest, p.size(1));
  std::vector<torch::Tensor> padded;
  for (const auto& p : parts) {
    if (p.size(1) == longest) {
      padded.push_back(p);
      continue;
    }
    auto shape = p.sizes().vec();
    shape[1] = longest;
    auto out = torch::full(shape, kPadIndex, p.options());
    out.narrow(1, 0, p.size(1)).copy_(p);
    padded.push_back(out);
  }
  return torch::cat(padded);
}

double round_to(double v, int digits) {
  const double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

// Transformers' speed_metrics.
void add_speed_metrics(Metrics& metrics, const std::string& prefix, std::chrono::steady_clock::time_point start,
                       int64_t num_samples, int64_t num_steps) {
  const double runtime = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics[prefix + "_runtime"] = round_to(runtime, 4);
  if (runtime > 0) {
    metrics[prefix + "_samples_per_second"] = round_to(static_cast<double>(num_samples) / runtime, 3);
    metrics[prefix + "_steps_per_second"] = round_to(static_cast<double>(num_steps) / runtime, 3);
  }
}

}  // namespace

Trainer::Impl::LoopOutput Trainer::Impl::evaluation_loop(DataLoader<TensorDict>& loader, const std::string& prefix,
                                                         bool keep_predictions) {
  auto& module = *model.module;
  module.eval();
  keep_predictions = keep_predictions && !args.prediction_loss_only();
  const bool predicts = keep_predictions && model.predict;
  std::vector<torch::Tensor> losses, predictions, labels;
  {
    torch::NoGradGuard no_grad;
    for (TensorDict& batch : loader) {
      bool has_labels = true;
      for (const auto& name : args.label_names()) has_labels = has_labels && batch.count(name) > 0;
      ACCEL_CHECK_ARG(has_labels || predicts, "Trainer: the ", prefix,
                      " batches lack a label entry of label_names, so there is no loss to compute; give "
                      "ModelFunctions::predict for predictions without labels");
      if (has_labels) {
        // Transformers repeats the loss per_device_eval_batch_size times;
        // with even batches every prepared batch has that many examples.
        const int64_t n = batch.begin()->second.size(0);
        torch::Tensor loss = model.loss(batch).detach().reshape({1}).to(torch::kFloat32);
        losses.push_back(accelerator->gather_for_metrics(loss.repeat({n})).cpu());
      }
      if (predicts) {
        auto logits = accelerator->pad_across_processes(model.predict(batch).detach(), 1, kPadIndex);
        predictions.push_back(accelerator->gather_for_metrics(logits).cpu());
      }
      if (keep_predictions && has_labels && !args.label_names().empty()) {
        std::vector<torch::Tensor> parts;
        for (const auto& name : args.label_names()) {
          auto l = accelerator->pad_across_processes(batch.at(name), 1, kPadIndex);
          parts.push_back(accelerator->gather_for_metrics(l).cpu());
        }
        labels.push_back(parts.size() == 1 ? parts[0] : torch::stack(parts));
      }
      each([&](TrainerCallback& c) { c.on_prediction_step(args, state, control); });
    }
  }
  module.train();

  LoopOutput out;
  out.predictions = pad_and_cat(predictions);
  out.label_ids = pad_and_cat(labels);
  if (model.compute_metrics && out.predictions.defined() && out.label_ids.defined()) {
    for (const auto& [k, v] : model.compute_metrics(EvalPrediction{out.predictions, out.label_ids}))
      out.metrics[k.rfind(prefix + "_", 0) == 0 ? k : prefix + "_" + k] = v;
  }
  if (!losses.empty()) {
    torch::Tensor all = torch::cat(losses);
    out.num_samples = all.numel();
    const auto finite = torch::isfinite(all);
    if (args.logging_nan_inf_filter() && finite.any().item<bool>()) all = all.masked_select(finite);
    out.metrics[prefix + "_loss"] = all.mean().item<double>();
  } else {
    out.num_samples = out.predictions.defined() ? out.predictions.size(0) : 0;
  }
  return out;
}

Metrics Trainer::Impl::evaluate() {
  ACCEL_CHECK_ARG(eval_loader, "Trainer::evaluate: the Trainer was given no eval dataset");
  const auto start = std::chrono::steady_clock::now();
  // As Transformers: predictions only when there are metrics to compute.
  auto out = evaluation_loop(*eval_loader, "eval", static_cast<bool>(model.compute_metrics));
  const int64_t total = args.per_device_eval_batch_size() * accelerator->num_processes();
  add_speed_metrics(out.metrics, "eval", start, out.num_samples, (out.num_samples + total - 1) / total);
  log(out.metrics);
  control.should_evaluate = false;
  each([&](TrainerCallback& c) { c.on_evaluate(args, state, control, out.metrics); });
  return out.metrics;
}

PredictionOutput Trainer::Impl::predict(const Datasets& test_dataset) {
  ACCEL_CHECK_ARG(test_dataset, "Trainer::predict: the test dataset is null");
  const auto start = std::chrono::steady_clock::now();
  auto loader = accelerator->prepare_unsaved_data_loader(
      make_loader(test_dataset, args, false, accelerator->device().is_cuda(), main_input_name));
  auto out = evaluation_loop(loader, "test", true);
  const int64_t total = args.per_device_eval_batch_size() * accelerator->num_processes();
  add_speed_metrics(out.metrics, "test", start, out.num_samples, (out.num_samples + total - 1) / total);
  each([&](TrainerCallback& c) { c.on_predict(args, state, control, out.metrics); });
  return PredictionOutput{out.predictions, out.label_ids, out.metrics};
}

}  // namespace accel
