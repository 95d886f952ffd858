#pragma once
// LRScheduler: a learning rate per param group that follows a function of
// the step, with the semantics of PyTorch's LambdaLR (the class every
// Transformers schedule is built on; LibTorch ships none of them):
//
//   lr(group, step) = base_lr(group) * lambda(group)(step)
//
// where base_lr is the group's lr when the scheduler was constructed. The
// constructor already applies step 0 (as PyTorch's does), so the usual loop
// is: optimizer.step(); scheduler.step(); and the lr a step trains with is
// lambda(number of scheduler steps taken so far).
//
// The lr is read and written through OptimizerOptions::get_lr()/set_lr(),
// so any LibTorch optimizer works (Adam, AdamW, SGD, RMSprop, Adagrad, LBFGS).
//
// Differences from PyTorch, by design:
// - PyTorch stores "initial_lr" in each param group and a second scheduler
//   on the same optimizer reads it; LibTorch's options have no room for it,
//   so a scheduler always takes the groups' lrs at construction as its base.
//   Build one scheduler per optimizer, before its lr is changed.
// - load_state() also re-applies the lr of the restored step, so a resumed
//   run does not depend on the optimizer's saved lr being restored first.
#include <cstdint>
#include <functional>
#include <vector>

#include <torch/optim/optimizer.h>

#include "accel/util/export.h"

namespace accel {

/// The factor applied to a group's base lr at a scheduler step (0, 1, ...).
using LrLambda = std::function<double(int64_t step)>;

/// What a checkpoint needs to resume a scheduler: the step it is at and the
/// base lrs (one per param group). The lambdas are code, not state: the
/// resumed program rebuilds them with the same arguments.
struct ACCEL_API SchedulerState {
  int64_t last_epoch = 0;
  std::vector<double> base_lrs;

  bool operator==(const SchedulerState&) const = default;
};

/// Holds a reference to the optimizer, which must outlive it.
class ACCEL_API LRScheduler {
 public:
  /// One lambda for every param group.
  LRScheduler(torch::optim::Optimizer& optimizer, LrLambda lr_lambda);
  /// One lambda per param group, in the optimizer's group order; a count
  /// other than the number of groups throws std::invalid_argument.
  LRScheduler(torch::optim::Optimizer& optimizer, std::vector<LrLambda> lr_lambdas);

  /// Advances one step and sets every group's lr for it. Throws
  /// std::logic_error if the optimizer's group count changed since
  /// construction (the lambdas and base lrs would no longer line up).
  void step();

  /// The number of step() calls since construction (PyTorch's last_epoch).
  int64_t last_epoch() const { return last_epoch_; }
  /// The lrs set by the last step (or by construction), one per group.
  std::vector<double> get_last_lr() const { return last_lr_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }

  SchedulerState state() const { return {last_epoch_, base_lrs_}; }
  /// Restores a saved state and sets the lrs of its step. A base_lrs size
  /// other than the group count, or a negative last_epoch, throws
  /// std::invalid_argument.
  void load_state(const SchedulerState& state);

  torch::optim::Optimizer& optimizer() const { return *optimizer_; }

 private:
  void check_groups(const char* where) const;
  void apply();

  torch::optim::Optimizer* optimizer_;
  std::vector<LrLambda> lr_lambdas_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = 0;
};

}  // namespace accel
