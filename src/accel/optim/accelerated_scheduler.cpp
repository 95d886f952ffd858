#include "accel/optim/accelerated_scheduler.h"

#include <stdexcept>

#include "accel/util/check.h"

namespace accel {

namespace {
// LibTorch's schedulers keep their step count in a protected member and
// offer no state API; a pointer to member taken through a subclass reaches it.
struct StepCount : torch::optim::LRScheduler {
  static unsigned& of(torch::optim::LRScheduler& scheduler) { return scheduler.*(&StepCount::step_count_); }
};
}  // namespace

AcceleratedScheduler::AcceleratedScheduler(std::shared_ptr<LRScheduler> scheduler,
                                           std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers,
                                           std::shared_ptr<const GradientState> gradient_state,
                                           SchedulerStepping stepping)
    : AcceleratedScheduler(std::move(scheduler), nullptr, std::move(optimizers), std::move(gradient_state), stepping) {}

AcceleratedScheduler::AcceleratedScheduler(std::shared_ptr<torch::optim::LRScheduler> scheduler,
                                           std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers,
                                           std::shared_ptr<const GradientState> gradient_state,
                                           SchedulerStepping stepping)
    : AcceleratedScheduler(nullptr, std::move(scheduler), std::move(optimizers), std::move(gradient_state), stepping) {}

AcceleratedScheduler::AcceleratedScheduler(std::shared_ptr<LRScheduler> scheduler,
                                           std::shared_ptr<torch::optim::LRScheduler> torch_scheduler,
                                           std::vector<std::shared_ptr<AcceleratedOptimizer>> optimizers,
                                           std::shared_ptr<const GradientState> gradient_state,
                                           SchedulerStepping stepping)
    : scheduler_(std::move(scheduler)),
      torch_scheduler_(std::move(torch_scheduler)),
      optimizers_(std::move(optimizers)),
      gradient_state_(std::move(gradient_state)),
      stepping_(stepping) {
  ACCEL_CHECK_ARG(scheduler_ || torch_scheduler_, "AcceleratedScheduler: the scheduler is null, expected one");
  ACCEL_CHECK_ARG(gradient_state_, "AcceleratedScheduler: the gradient state is null");
  ACCEL_CHECK_ARG(stepping_.num_processes >= 1, "AcceleratedScheduler: num_processes must be >= 1, got ",
                  stepping_.num_processes);
}

void AcceleratedScheduler::step_once() {
  if (scheduler_) {
    scheduler_->step();
  } else {
    torch_scheduler_->step();
  }
}

void AcceleratedScheduler::step() {
  if (!stepping_.step_with_optimizer) {
    step_once();
    return;
  }
  if (!gradient_state_->sync_gradients()) return;
  for (const auto& opt : optimizers_)
    if (opt->step_was_skipped()) return;
  const int times = stepping_.split_batches ? 1 : stepping_.num_processes;
  for (int i = 0; i < times; ++i) step_once();
}

std::vector<double> AcceleratedScheduler::get_last_lr() const {
  if (scheduler_) return scheduler_->get_last_lr();
  std::vector<double> lrs;
  if (!optimizers_.empty())
    for (auto& g : optimizers_.front()->optimizer().param_groups()) lrs.push_back(g.options().get_lr());
  return lrs;
}

SchedulerState AcceleratedScheduler::state() const {
  if (scheduler_) return scheduler_->state();
  return SchedulerState{static_cast<int64_t>(StepCount::of(*torch_scheduler_)), {}};
}

void AcceleratedScheduler::load_state(const SchedulerState& state) {
  if (scheduler_) {
    scheduler_->load_state(state);
    return;
  }
  ACCEL_CHECK_ARG(state.base_lrs.empty() && state.last_epoch >= 0,
                  "AcceleratedScheduler::load_state: the state (last_epoch ", state.last_epoch, ", ",
                  state.base_lrs.size(), " base lrs) is not a LibTorch scheduler's step count");
  StepCount::of(*torch_scheduler_) = static_cast<unsigned>(state.last_epoch);
}

}  // namespace accel
