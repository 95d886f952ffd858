#include "accel/gradient_state.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "accel/util/check.h"

namespace accel {

GradientState::GradientState(GradientAccumulationPlugin plugin) : plugin_(plugin) {
  ACCEL_CHECK_ARG(plugin_.num_steps() >= 1, "gradient accumulation num_steps must be >= 1, got ", plugin_.num_steps());
}

void GradientState::advance() {
  if (plugin_.sync_with_dataloader() && end_of_dataloader()) {
    step_ = 0;
    sync_gradients_ = true;
    return;
  }
  ++step_;
  sync_gradients_ = step_ % plugin_.num_steps() == 0;
}

void GradientState::on_pass_begin(const void* loader) {
  // A pass restarted without finishing (a `break`) replaces its old entry.
  std::erase_if(active_, [&](const Active& a) { return a.loader == loader; });
  active_.push_back({loader, {}});
}

void GradientState::on_batch(const void* loader, const LoaderProgress& progress) {
  for (auto& a : active_)
    if (a.loader == loader) a.progress = progress;
}

void GradientState::on_pass_end(const void* loader) {
  std::erase_if(active_, [&](const Active& a) { return a.loader == loader; });
}

}  // namespace accel
