#pragma once
// GradScaler: dynamic loss scaling for fp16 training, PyTorch's
// torch.amp.GradScaler in C++ (same defaults, same call order, same state).
//
// fp16 gradients underflow to zero when small. Multiplying the loss by a
// large scale keeps them representable; the gradients are divided by it
// again before the optimizer sees them. If any gradient came out inf or nan
// the scale was too large: that step is skipped and the scale shrinks
// (backoff_factor). After growth_interval steps in a row without one, the
// scale grows (growth_factor), so it tracks the largest one that is safe.
// DeepSpeed's variant (its fp16 hysteresis and min_loss_scale, which a
// DeepSpeed config gives the Accelerator) is two more options: hysteresis
// lets a few overflows only skip their step before the scale drops, and
// min_scale is a floor the backoff never goes below.
//
//   scaler.scale(loss).backward();
//   scaler.unscale_(optimizer);      // optional: to clip the true gradients
//   scaler.step(optimizer);          // skipped if an inf/nan was found
//   scaler.update();                 // once per iteration, after every step()
//
// The scale and the growth tracker live on the device of the first loss
// given to scale() (or of the first gradient, if unscale_ comes first), as
// an fp32 and an int32 0-d tensor, and are updated there by ATen's AMP
// kernels (_amp_foreach_non_finite_check_and_unscale_, _amp_update_scale_):
// update() does not wait for the device. Two things do read back, as in
// PyTorch: step() reads the inf flag (4 bytes) to decide whether to call
// the optimizer, and get_scale()/state() read the scale. With hysteresis > 1
// or min_scale > 0, which ATen's kernel does not know, update() applies the
// rule on the host instead (reading the flag, the scale and the tracker,
// which step() has waited for already).
//
// Distributed: with a process group, each optimizer's inf flag is
// max-reduced over it in unscale_, so all ranks skip the same steps and keep
// the same scale even when their gradients differ (sharded gradients, or an
// overflow on one rank only). Every rank must then call unscale_/step for
// the same optimizers in the same order; the group must reduce tensors on
// the scale's device (Gloo: CPU, NCCL: CUDA). Without a group nothing is
// reduced: with DDP the gradients, hence the flags, are equal anyway.
//
// Not thread-safe. Optimizers are told apart by address, from unscale_ or
// step until the next update().
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "accel/amp/grad_scaler_options.h"
#include "accel/util/export.h"

namespace accel {

/// What a checkpoint keeps of a scaler: PyTorch's GradScaler.state_dict()
/// (the scale, the growth tracker, and the options that shape later
/// updates), and DeepSpeed's hysteresis options and counter.
struct ACCEL_API GradScalerState {
  double scale = 65536.0;
  int64_t growth_tracker = 0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  int64_t hysteresis = 1;
  double min_scale = 0.0;
  /// Overflows left until the next backoff, counting the one that backs off
  /// (hysteresis after a growth, down to 1).
  int64_t hysteresis_tracker = 1;

  /// As tensors (for a safetensors checkpoint), under PyTorch's state_dict
  /// keys: "scale", "growth_factor", "backoff_factor" (0-d float64),
  /// "growth_interval", "_growth_tracker" (0-d int64); and, only when
  /// hysteresis > 1 or min_scale > 0 (so a PyTorch-style scaler saves
  /// exactly PyTorch's keys), "hysteresis", "_hysteresis_tracker" (int64)
  /// and "min_scale" (float64).
  std::map<std::string, torch::Tensor> to_tensors() const;
  /// From to_tensors' form. An empty map (what PyTorch saves for a disabled
  /// scaler) or a missing or non-scalar key throws std::invalid_argument;
  /// without the hysteresis keys (a PyTorch state) the state is PyTorch's
  /// rule: hysteresis 1, no floor.
  static GradScalerState from_tensors(const std::map<std::string, torch::Tensor>& tensors);

  bool operator==(const GradScalerState&) const = default;
};

class ACCEL_API GradScaler {
 public:
  /// Checks the options (std::invalid_argument names the bad one).
  /// group: the found-inf flag is max-reduced over it so every rank skips
  /// together (null: no reduction; pass accel::state().process_group() to
  /// reduce over all ranks).
  explicit GradScaler(GradScalerOptions options = {}, c10::intrusive_ptr<c10d::ProcessGroup> group = {});

  /// loss * scale, with PyTorch's type promotion against the 0-d fp32 scale
  /// (an fp16 loss with dims stays fp16; a 0-d fp16 loss comes back fp32,
  /// as in PyTorch). The loss itself when disabled.
  torch::Tensor scale(const torch::Tensor& loss);

  /// Divides the optimizer's gradients by the scale in place and records
  /// whether any was inf/nan (reduced over the group). At most once per
  /// optimizer per iteration, and before step(): otherwise std::logic_error.
  /// Gradients must be dense fp32 (or fp64); others throw
  /// std::invalid_argument naming the parameter. fp16: keep fp32 master
  /// parameters, since unscaled fp16 gradients would underflow again (PyTorch
  /// refuses them too). bf16: it has fp32's range, so needs no scaling, and
  /// ATen's CUDA kernel does not take it (its CPU kernel does). No-op when
  /// disabled.
  void unscale_(torch::optim::Optimizer& optimizer);

  /// unscale_ if not done yet for this optimizer, then optimizer.step()
  /// unless an inf/nan was found. Returns whether it stepped. Once per
  /// optimizer per iteration (std::logic_error otherwise). Optimizers that
  /// need a closure (LBFGS) are not supported, as in PyTorch.
  bool step(torch::optim::Optimizer& optimizer);
  /// The same, with `update` doing the optimizer's step in place of
  /// optimizer.step() (AcceleratedOptimizer's fused step).
  bool step(torch::optim::Optimizer& optimizer, const std::function<void()>& update);

  /// The next iteration's scale from this one's flags (all optimizers):
  /// backoff on inf/nan, growth after growth_interval good iterations; then
  /// forgets the iteration's optimizers. Throws std::logic_error if no
  /// optimizer was unscaled or stepped since the last update. No-op when
  /// disabled.
  void update();

  /// The current scale (reads it from the device); 1 when disabled.
  double get_scale() const;
  /// Good iterations since the last growth or overflow (reads the device).
  int64_t growth_tracker() const;
  /// Overflows left until the next backoff (see GradScalerOptions::hysteresis).
  int64_t hysteresis_tracker() const { return hysteresis_tracker_; }
  bool enabled() const { return options_.enabled(); }
  const GradScalerOptions& options() const { return options_; }
  /// Whether any optimizer unscaled in this iteration found inf/nan (after
  /// the group reduction); false before the first unscale_ or step.
  bool found_inf() const;

  /// nullopt when disabled (PyTorch's empty state_dict).
  std::optional<GradScalerState> state() const;
  /// Restores scale, trackers and the options in the state (checked like
  /// the constructor's). Ignored when disabled, as in PyTorch.
  void load_state(const GradScalerState& state);

 private:
  enum class Stage { ready, unscaled, stepped };
  struct PerOptimizer {
    Stage stage = Stage::ready;
    torch::Tensor found_inf;  // 0-d fp32 on the scale's device, reduced
  };

  void lazy_init(const torch::Device& device);
  // DeepSpeed's rule (hysteresis, floor), which ATen's kernel lacks.
  void update_on_host(bool found_inf);

  GradScalerOptions options_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  // Host copies until the tensors exist (init_scale, or a loaded state).
  double pending_scale_;
  int64_t pending_growth_tracker_ = 0;
  torch::Tensor scale_;           // 0-d float32
  torch::Tensor growth_tracker_;  // 0-d int32 (what _amp_update_scale_ takes)
  int64_t hysteresis_tracker_;    // host only: only update_on_host changes it
  std::unordered_map<const torch::optim::Optimizer*, PerOptimizer> per_optimizer_;
};

}  // namespace accel
