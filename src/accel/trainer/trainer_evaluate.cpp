// Trainer::evaluate: Transformers' evaluation_loop for the loss and
// compute_metrics: each batch's mean loss counts once per example, every
// rank's values are gathered without the repeats that even out the last
// batch (gather_for_metrics), and non-finite losses are left out of the mean.
#include <chrono>
#include <cmath>

#include "accel/trainer/trainer_impl.h"
#include "accel/util/check.h"

namespace accel {

Metrics Trainer::Impl::evaluate() {
  ACCEL_CHECK_ARG(eval_loader, "Trainer::evaluate: the Trainer was given no eval dataset");
  const auto start = std::chrono::steady_clock::now();
  auto& module = *model.module;
  module.eval();
  const bool want_predictions = model.compute_metrics && !args.prediction_loss_only();
  std::vector<torch::Tensor> losses, predictions, labels;
  int64_t batches = 0;
  {
    torch::NoGradGuard no_grad;
    for (TensorDict& batch : *eval_loader) {
      ++batches;
      const int64_t n = batch.begin()->second.size(0);
      torch::Tensor loss = model.loss(batch).detach().reshape({1}).to(torch::kFloat32);
      losses.push_back(accelerator->gather_for_metrics(loss.repeat({n})).cpu());
      if (want_predictions) {
        predictions.push_back(accelerator->gather_for_metrics(model.predict(batch).detach()).cpu());
        std::vector<torch::Tensor> label_parts;
        for (const auto& name : args.label_names()) {
          auto it = batch.find(name);
          ACCEL_CHECK_ARG(it != batch.end(), "Trainer::evaluate: the eval batch has no label entry '", name,
                          "' (label_names)");
          label_parts.push_back(accelerator->gather_for_metrics(it->second).cpu());
        }
        labels.push_back(label_parts.size() == 1 ? label_parts[0] : torch::stack(label_parts));
      }
    }
  }
  module.train();
  Metrics metrics;
  int64_t num_samples = 0;
  if (!losses.empty()) {
    torch::Tensor all = torch::cat(losses);
    num_samples = all.numel();
    all = all.masked_select(torch::isfinite(all));
    if (all.numel() > 0) metrics["eval_loss"] = all.mean().item<double>();
  }
  if (want_predictions && !predictions.empty()) {
    const Metrics user = model.compute_metrics(EvalPrediction{torch::cat(predictions), torch::cat(labels)});
    for (const auto& [k, v] : user) metrics[k.rfind("eval_", 0) == 0 ? k : "eval_" + k] = v;
  }
  const double runtime = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto round_to = [](double v, int d) { return std::round(v * std::pow(10.0, d)) / std::pow(10.0, d); };
  metrics["eval_runtime"] = round_to(runtime, 4);
  if (runtime > 0) {
    const double total = static_cast<double>(args.per_device_eval_batch_size() * accelerator->num_processes());
    metrics["eval_samples_per_second"] = round_to(num_samples / runtime, 3);
    metrics["eval_steps_per_second"] = round_to(std::ceil(num_samples / total) / runtime, 3);
  }
  log(metrics);
  control.should_evaluate = false;
  each([&](TrainerCallback& c) { c.on_evaluate(args, state, control, metrics); });
  (void)batches;
  return metrics;
}

}  // namespace accel
