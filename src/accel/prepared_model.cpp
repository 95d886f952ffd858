#include "accel/prepared_model.h"

#include "accel/checkpoint/model_files.h"

namespace accel {

safetensors::NamedTensors PreparedModelCore::state() const {
  if (sharding_) return sharding_->full_state();
  return model_state(*module_);
}

void PreparedModelCore::write_parameters(const std::function<void()>& write) {
  if (sharding_) {
    sharding_->write_full_parameters(write);
  } else {
    write();
  }
}

}  // namespace accel
