#pragma once
// GradientState: whether this batch's backward synchronises gradients.
// Accelerate's rule for gradient accumulation over `num_steps` batches:
// the Accelerator's accumulate() advances it once per batch; gradients
// sync on every num_steps-th batch and, with sync_with_dataloader, on the
// last batch of the loader in use, which then restarts the count.
// The prepared optimizer and scheduler step only when sync_gradients().
//
// Prepared loaders report to it (it is their LoaderObserver), so it also
// knows the innermost running loader's progress for gather_for_metrics.
#include <cstdint>
#include <vector>

#include <torch/arg.h>

#include "accel/data/loader_observer.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API GradientAccumulationPlugin {
  /// Batches whose gradients add up to one optimizer step.
  TORCH_ARG(int64_t, num_steps) = 1;
  // Accelerate's adjust_scheduler is not offered: it only bumps PyTorch's
  // _step_count on accumulation batches, which nothing but OneCycleLR's
  // total_steps guard reads (LibTorch and accel have no OneCycleLR), and
  // accelerate 1.15 drops its default True on the way to GradientState
  // (to_kwargs() keeps non-defaults only), so it is off there too.
  /// Sync (and restart the count) at the end of a prepared loader.
  TORCH_ARG(bool, sync_with_dataloader) = true;
  /// All-reduce on every batch, stepping only every num_steps (saves
  /// memory at the cost of communication).
  TORCH_ARG(bool, sync_each_batch) = false;
};

class ACCEL_API GradientState : public LoaderObserver {
 public:
  /// Throws when num_steps < 1, naming it.
  explicit GradientState(GradientAccumulationPlugin plugin = {});

  const GradientAccumulationPlugin& plugin() const { return plugin_; }
  int64_t num_steps() const { return plugin_.num_steps(); }

  /// True when the current batch completes an accumulation.
  bool sync_gradients() const { return sync_gradients_; }
  /// One more batch (Accelerator::accumulate calls this): sets sync_gradients.
  void advance();
  /// Batches counted towards accumulation (Accelerate's `step`); saved and
  /// restored by checkpoints so a resumed run syncs on the same batches.
  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }

  /// Inside a pass of a prepared loader.
  bool in_dataloader() const { return !active_.empty(); }
  /// The innermost running loader holds its last batch.
  bool end_of_dataloader() const { return in_dataloader() && active_.back().progress.end_of_dataloader; }
  /// The innermost running loader's progress ({false, -1} outside loaders).
  LoaderProgress progress() const { return in_dataloader() ? active_.back().progress : LoaderProgress{}; }

  void on_pass_begin(const void* loader) override;
  void on_batch(const void* loader, const LoaderProgress& progress) override;
  void on_pass_end(const void* loader) override;

 private:
  struct Active {
    const void* loader;
    LoaderProgress progress;
  };
  GradientAccumulationPlugin plugin_;
  bool sync_gradients_ = true;
  int64_t step_ = 0;
  std::vector<Active> active_;
};

}  // namespace accel
