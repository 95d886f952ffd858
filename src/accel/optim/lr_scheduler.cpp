#include "accel/optim/lr_scheduler.h"

#include <stdexcept>
#include <string>

#include "accel/util/check.h"

namespace accel {

LRScheduler::LRScheduler(torch::optim::Optimizer& optimizer, LrLambda lr_lambda)
    : LRScheduler(optimizer, std::vector<LrLambda>(optimizer.param_groups().size(), lr_lambda)) {}

LRScheduler::LRScheduler(torch::optim::Optimizer& optimizer, std::vector<LrLambda> lr_lambdas)
    : optimizer_(&optimizer), lr_lambdas_(std::move(lr_lambdas)) {
  const auto& groups = optimizer.param_groups();
  ACCEL_CHECK_ARG(lr_lambdas_.size() == groups.size(), "LRScheduler: got ", lr_lambdas_.size(),
                  " lr lambdas for an optimizer with ", groups.size(), " param groups; expected one per group");
  for (size_t i = 0; i < lr_lambdas_.size(); ++i)
    ACCEL_CHECK_ARG(lr_lambdas_[i], "LRScheduler: lr lambda ", i, " is empty");
  base_lrs_.reserve(groups.size());
  for (const auto& g : groups) base_lrs_.push_back(g.options().get_lr());
  apply();  // step 0, as PyTorch's constructor does
}

void LRScheduler::step() {
  check_groups("step");
  ++last_epoch_;
  apply();
}

void LRScheduler::check_groups(const char* where) const {
  const size_t groups = optimizer_->param_groups().size();
  ACCEL_CHECK_STATE(groups == lr_lambdas_.size(), "LRScheduler::", where, ": the optimizer has ", groups,
                    " param groups but the scheduler was built for ", lr_lambdas_.size(),
                    " (groups added after the scheduler was made are not scheduled)");
}

void LRScheduler::load_state(const SchedulerState& state) {
  const size_t groups = optimizer_->param_groups().size();
  ACCEL_CHECK_ARG(state.base_lrs.size() == groups, "LRScheduler::load_state: the state has ", state.base_lrs.size(),
                  " base lrs but the optimizer has ", groups, " param groups");
  ACCEL_CHECK_ARG(state.last_epoch >= 0, "LRScheduler::load_state: last_epoch ", state.last_epoch,
                  " is negative; expected >= 0");
  check_groups("load_state");
  base_lrs_ = state.base_lrs;
  last_epoch_ = state.last_epoch;
  apply();
}

void LRScheduler::apply() {
  auto& groups = optimizer_->param_groups();
  last_lr_.resize(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    // Same order of operations as PyTorch (base * factor) so the lrs are
    // bit-identical to a Python run.
    const double lr = base_lrs_[i] * lr_lambdas_[i](last_epoch_);
    groups[i].options().set_lr(lr);
    last_lr_[i] = groups[i].options().get_lr();
  }
}

}  // namespace accel
