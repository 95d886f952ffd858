#include "accel/optim/accelerated_optimizer.h"

#include <cmath>
#include <stdexcept>
#include <unordered_set>
#include <utility>

#include "accel/optim/grad_norm.h"
#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel {

AcceleratedOptimizer::AcceleratedOptimizer(std::shared_ptr<torch::optim::Optimizer> optimizer,
                                           std::shared_ptr<const GradientState> gradient_state,
                                           std::shared_ptr<GradScaler> scaler,
                                           std::shared_ptr<OptimizerTensors> tensors, bool fused_step)
    : optimizer_(std::move(optimizer)),
      gradient_state_(std::move(gradient_state)),
      scaler_(std::move(scaler)),
      tensors_(std::move(tensors)) {
  ACCEL_CHECK_ARG(optimizer_, "AcceleratedOptimizer: the optimizer is null, expected one");
  ACCEL_CHECK_ARG(gradient_state_, "AcceleratedOptimizer: the gradient state is null");
  if (fused_step && FusedStep::supports(*optimizer_)) fused_.emplace();
}

void AcceleratedOptimizer::unscale_gradients() {
  if (unscaled_) return;
  if (tensors_) tensors_->gradients_to_optimizer();
  if (scaler_ && scaler_->enabled()) scaler_->unscale_(*optimizer_);
  unscaled_ = true;
}

void AcceleratedOptimizer::step() {
  if (!gradient_state_->sync_gradients()) return;
  unscale_gradients();
  clip_unless_user_did();
  auto update = [this] {
    if (tensors_ && tensors_->step_optimizer(*optimizer_)) return;
    if (fused_ && fused_->step_on_cuda(*optimizer_)) return;
    optimizer_->step();
  };
  if (scaler_ && scaler_->enabled()) {
    skipped_ = !scaler_->step(*optimizer_, update);
    scaler_->update();
  } else {
    update();
    skipped_ = false;
  }
  if (tensors_ && !skipped_) tensors_->parameters_to_model();
  unscaled_ = false;
}

void AcceleratedOptimizer::finish_pending_step() {
  if (tensors_) tensors_->finish_pending();
}

void AcceleratedOptimizer::clip_grad_norm_each_step(double max_norm, std::vector<torch::Tensor> model_parameters) {
  ACCEL_CHECK_ARG(max_norm > 0 && std::isfinite(max_norm), "AcceleratedOptimizer: the max gradient norm is ",
                  format_double(max_norm), "; expected a finite value > 0");
  max_grad_norm_ = max_norm;
  clipped_parameters_ = std::move(model_parameters);
}

void AcceleratedOptimizer::note_user_clip(const std::vector<torch::Tensor>& parameters) {
  if (!max_grad_norm_ || user_clipped_) return;
  std::unordered_set<const void*> mine;
  for (const auto& p : clipped_parameters_) mine.insert(p.unsafeGetTensorImpl());
  for (const auto& p : parameters)
    if (mine.count(p.unsafeGetTensorImpl())) {
      user_clipped_ = true;
      return;
    }
}

void AcceleratedOptimizer::clip_unless_user_did() {
  // DeepSpeed's engine clips at every step; a clip the user asked for in
  // this step stands in for it (clipping twice would shrink them twice).
  if (std::exchange(user_clipped_, false) || !max_grad_norm_) return;
  std::vector<const OptimizerTensors*> holders;
  if (tensors_) holders.push_back(tensors_.get());
  auto grads = gradients_of(clipped_parameters_, holders);
  clip_grad_norm_(grads, *max_grad_norm_);
}

void AcceleratedOptimizer::zero_grad(bool set_to_none) {
  if (!gradient_state_->sync_gradients()) return;
  optimizer_->zero_grad(set_to_none);
  if (tensors_) tensors_->zero_model_grads(set_to_none);
  unscaled_ = false;
}

bool AcceleratedOptimizer::steps_on_device(std::string* reason) const {
  auto no = [&](std::string why) {
    if (reason) *reason = std::move(why);
    return false;
  };
  if (!fused_)
    return no(
        "its step() is not one of ATen's fused kernels (torch::optim::Adam, AdamW or SGD with "
        "fused_optimizer_step on); other optimizers compute on the host from values a replay cannot update");
  if (scaler_ && scaler_->enabled())
    return no("fp16 loss scaling decides on the host whether to step; use bf16 or fp32");
  for (const auto& group : optimizer_->param_groups())
    for (const auto& p : group.params())
      if (!p.is_cuda()) return no("a parameter is on " + p.device().str() + ", not on a CUDA device");
  return true;
}

void AcceleratedOptimizer::prepare_capture() {
  if (fused_) fused_->use_device_lr();
}

void AcceleratedOptimizer::before_replay() {
  if (fused_) fused_->refresh_lr(*optimizer_);
}

void AcceleratedOptimizer::after_replay() {
  if (fused_) fused_->advance_host_steps(*optimizer_);
}

}  // namespace accel
