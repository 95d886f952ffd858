#pragma once
// AcceleratedScheduler: a learning-rate scheduler stepped by Accelerate's
// rule. It steps only when the optimizers really stepped (not on
// accumulation batches, not after an fp16 overflow skipped the update), and
// then num_processes times per call, because each optimizer step consumed
// num_processes batches of the size the schedule was planned for, unless
// split_batches (batches are cut across ranks, so one step is one batch).
// With step_with_optimizer = false it steps on every call.
#include <functional>
#include <memory>
#include <vector>

#include <torch/optim/schedulers/lr_scheduler.h>

#include "accel/gradient_state.h"
#include "accel/optim/accelerated_optimizer.h"
#include "accel/optim/lr_scheduler.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API SchedulerStepping {
  int num_processes = 1;
  bool split_batches = false;
  bool step_with_optimizer = true;
};

class ACCEL_API AcceleratedScheduler {
 public:
  AcceleratedScheduler(std::shared_ptr<LRScheduler> scheduler,
                       std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers,
                       std::shared_ptr<const GradientState> gradient_state, SchedulerStepping stepping);
  /// LibTorch's own schedulers (StepLR, ...), stepped by the same rule.
  AcceleratedScheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler,
                       std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers,
                       std::shared_ptr<const GradientState> gradient_state, SchedulerStepping stepping);

  void step();
  /// The learning rate of each param group of the first optimizer.
  std::vector<double> get_last_lr() const;
  /// The wrapped accel scheduler (null when it wraps a LibTorch one).
  LRScheduler* scheduler() { return scheduler_.get(); }

  /// Where the schedule stands, for checkpoints. An accel LRScheduler's
  /// state; for a LibTorch scheduler its step count as last_epoch (its
  /// base_lrs empty: LibTorch's schedulers keep no more, the current lrs
  /// live in the optimizer's param groups).
  SchedulerState state() const;
  /// Restores state(); one taken from the other kind of scheduler throws
  /// std::invalid_argument.
  void load_state(const SchedulerState& state);
  /// Whether this wraps a LibTorch torch::optim::LRScheduler.
  bool wraps_libtorch_scheduler() const { return torch_scheduler_ != nullptr; }

 private:
  std::shared_ptr<LRScheduler> scheduler_;
  std::shared_ptr<torch::optim::LRScheduler> torch_scheduler_;
  std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers_;
  std::shared_ptr<const GradientState> gradient_state_;
  SchedulerStepping stepping_;

  AcceleratedScheduler(std::shared_ptr<LRScheduler> scheduler,
                       std::shared_ptr<torch::optim::LRScheduler> torch_scheduler,
                       std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers,
                       std::shared_ptr<const GradientState> gradient_state, SchedulerStepping stepping);
  void step_once();
};

}  // namespace accel
