#pragma once
// AcceleratedOptimizer: any torch::optim optimizer, prepared. Under
// gradient accumulation step() and zero_grad() do nothing until the batch
// that syncs gradients; under fp16 step() unscales the gradients, skips the
// update when any rank found inf/nan (step_was_skipped()) and adjusts the
// loss scale; with master weights it updates fp32 copies and rounds them
// back into the fp16/bf16 model. LibTorch's own Adam, AdamW and SGD with
// parameters on CUDA are stepped by ATen's fused kernels on their own state
// (optim/fused_step.h), as PyTorch steps its optimizers with multi-tensor
// kernels on CUDA by default; `fused_step = false` keeps their step().
// Under ZeRO (parallel/zero/zero_engine.h) the optimizer's parameters are
// the flat slices this rank owns: step() reduces the gradients into them
// first and all-gathers the updated slices into the model after. With a
// DeepSpeed config's gradient_clipping, step() also clips the global
// gradient norm, as DeepSpeed's engine does, unless the user clipped.
//
//   auto opt = accelerator.prepare(std::make_shared<torch::optim::AdamW>(model->parameters()));
//   opt->step(); opt->zero_grad();
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>

#include "accel/amp/grad_scaler.h"
#include "accel/amp/master_weights.h"
#include "accel/gradient_state.h"
#include "accel/optim/fused_step.h"
#include "accel/optim/optimizer_tensors.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API AcceleratedOptimizer {
 public:
  /// `scaler` (fp16) may be null. `tensors` (may be null) stands between
  /// the model and the optimizer: master weights (amp/master_weights.h) or
  /// a ZeRO engine, already built over `optimizer`.
  AcceleratedOptimizer(std::shared_ptr<torch::optim::Optimizer> optimizer,
                       std::shared_ptr<const GradientState> gradient_state,
                       std::shared_ptr<GradScaler> scaler = nullptr,
                       std::shared_ptr<OptimizerTensors> tensors = nullptr, bool fused_step = true);

  /// Updates the parameters if this batch syncs gradients.
  void step();
  /// Clears gradients if this batch syncs gradients (set_to_none as PyTorch's default).
  void zero_grad(bool set_to_none = true);
  /// The last step() found inf/nan gradients and did not update.
  bool step_was_skipped() const { return skipped_; }
  /// With ZeRO-Offload's delayed update (OffloadOptions::delayed_update) the
  /// last step's new values reach the model at the next step(); this waits
  /// for them and puts them in the model now. The Accelerator calls it before
  /// save_state and in wait_for_everyone(); otherwise it does nothing.
  void finish_pending_step();

  /// Makes the gradients the optimizer will use final for this step: copied
  /// to the masters and divided by the loss scale. Once per step; step()
  /// does it when clip_grad_norm_ has not.
  void unscale_gradients();

  // --- the engine's clipping (a DeepSpeed config's gradient_clipping) -------
  /// From now on each step() clips the gradients of `model_parameters` (the
  /// model's parameters this optimizer steps, as given to prepare()) to a
  /// global 2-norm of `max_norm` once they are unscaled, as
  /// Accelerator::clip_grad_norm_ would, unless the user clipped in this
  /// step (note_user_clip). max_norm must be finite and > 0.
  void clip_grad_norm_each_step(double max_norm, std::vector<torch::Tensor> model_parameters);
  /// nullopt: step() does not clip.
  std::optional<double> max_grad_norm() const { return max_grad_norm_; }
  /// The user clipped `parameters` for this step: if any is one this
  /// optimizer steps, its next step() does not clip again.
  void note_user_clip(const std::vector<torch::Tensor>& parameters);

  // --- CUDA graphs (graph/captured_step.h) ---------------------------------
  /// Whether step() runs entirely on the device with nothing read back
  /// (the fused kernels, every parameter on CUDA, no fp16 loss scaling):
  /// what a captured step needs. Says why not in `reason` otherwise.
  bool steps_on_device(std::string* reason = nullptr) const;
  /// Switches the fused step to learning rates held on the device.
  void prepare_capture();
  /// Before each run of a captured step: the current lr to the device.
  void before_replay();
  /// After each replay: host step counts advanced as the device's were.
  void after_replay();

  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  torch::optim::Optimizer* operator->() { return optimizer_.get(); }
  const std::shared_ptr<torch::optim::Optimizer>& optimizer_ptr() const { return optimizer_; }
  GradScaler* scaler() { return scaler_.get(); }
  const MasterWeights* master_weights() const { return dynamic_cast<const MasterWeights*>(tensors_.get()); }
  /// Master weights, a ZeRO engine, or null.
  OptimizerTensors* tensors() const { return tensors_.get(); }
  /// Milliseconds the last step's update took on the host (ZeRO-Offload's
  /// CPU Adam, see OptimizerTensors::last_update_ms); 0 otherwise.
  double last_update_ms() const { return tensors_ ? tensors_->last_update_ms() : 0.0; }

 private:
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  std::shared_ptr<const GradientState> gradient_state_;
  std::shared_ptr<GradScaler> scaler_;
  std::shared_ptr<OptimizerTensors> tensors_;
  std::optional<FusedStep> fused_;
  bool unscaled_ = false;
  bool skipped_ = false;
  std::optional<double> max_grad_norm_;
  std::vector<torch::Tensor> clipped_parameters_;  // the model's, for the norm
  bool user_clipped_ = false;

  // step()'s clip by max_grad_norm_ (skipped once after note_user_clip).
  void clip_unless_user_did();
};

}  // namespace accel
