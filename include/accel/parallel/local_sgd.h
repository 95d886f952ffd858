#pragma once
// LocalSGD (Accelerate's): each rank takes optimizer steps on its own
// gradients, with no all-reduce, and every `local_sgd_steps` steps the
// parameters are averaged across ranks. Communication drops by that factor;
// ranks drift apart between sync points and meet again at each one.
//
//   {
//     accel::LocalSGD local_sgd(accelerator, model, /*local_sgd_steps=*/8);
//     for (auto& batch : loader) {
//       ...; accelerator.backward(loss); opt->step(); opt->zero_grad();
//       local_sgd.step();
//     }
//   }  // the scope's end averages once more
#include <cstdint>

#include "accel/accelerator.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API LocalSGD {
 public:
  /// Disabled (a plain counter) in a single process or when enabled=false.
  template <class Holder>
  LocalSGD(Accelerator& accelerator, PreparedModel<Holder>& model, int64_t local_sgd_steps, bool enabled = true)
      : LocalSGD(accelerator, model.core(), local_sgd_steps, enabled) {}
  LocalSGD(Accelerator& accelerator, PreparedModelCore& model, int64_t local_sgd_steps, bool enabled = true);
  /// Averages the parameters a last time (when enabled).
  ~LocalSGD() noexcept(false);
  LocalSGD(const LocalSGD&) = delete;
  LocalSGD& operator=(const LocalSGD&) = delete;

  /// Call after each optimizer step: averages every local_sgd_steps calls.
  void step();
  int64_t num_steps() const { return num_steps_; }
  bool enabled() const { return enabled_; }

 private:
  void average_parameters();

  Accelerator& accelerator_;
  PreparedModelCore& model_;
  int64_t local_sgd_steps_;
  bool enabled_;
  int64_t num_steps_ = 0;
  NoSyncGuard no_sync_;
};

}  // namespace accel
