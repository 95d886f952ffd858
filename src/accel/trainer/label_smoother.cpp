// label_smoothed_loss: Transformers' LabelSmoother (trainer_pt_utils.py)
// without num_items_in_batch, which the Trainer does not pass for models
// that take no loss arguments: the mean is over this batch's labels.
#include "accel/trainer/label_smoother.h"

#include "accel/util/check.h"

namespace accel {

torch::Tensor label_smoothed_loss(const torch::Tensor& logits, const torch::Tensor& labels, double epsilon,
                                  bool shift_labels, int64_t ignore_index) {
  ACCEL_CHECK_ARG(logits.dim() >= 1 && labels.sizes() == logits.sizes().slice(0, logits.dim() - 1),
                  "label_smoothed_loss: logits of shape ", logits.sizes(), " and labels of shape ", labels.sizes(),
                  ", expected labels with the logits' shape less its last (class) dimension");
  ACCEL_CHECK_ARG(!labels.is_floating_point(), "label_smoothed_loss: labels of type ", labels.scalar_type(),
                  ", expected class indices (integers)");
  torch::Tensor x = logits, y = labels;
  if (shift_labels) {
    ACCEL_CHECK_ARG(logits.dim() >= 2, "label_smoothed_loss: shift_labels needs a sequence dimension, logits ",
                    logits.sizes());
    x = x.narrow(-2, 0, x.size(-2) - 1);
    y = y.narrow(-1, 1, y.size(-1) - 1);
  }
  const auto neg_log_probs = -torch::log_softmax(x, -1);
  auto index = y.unsqueeze(-1);
  const auto padding = index.eq(ignore_index);
  index = index.clamp_min(0).to(torch::kLong);
  auto nll = neg_log_probs.gather(-1, index).masked_fill(padding, 0.0);
  const auto sum_dtype = c10::promoteTypes(neg_log_probs.scalar_type(), torch::kFloat32);
  auto smoothed = neg_log_probs.sum({-1}, true, sum_dtype).masked_fill(padding, 0.0);
  const auto active = padding.numel() - padding.sum();
  const double classes = static_cast<double>(neg_log_probs.size(-1));
  return (1 - epsilon) * (nll.sum() / active) + epsilon * (smoothed.sum() / (active * classes));
}

}  // namespace accel
