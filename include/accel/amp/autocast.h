#pragma once
// Autocast for code outside the prepared model: the C++ spelling of
// `with torch.autocast(device_type, dtype)`. Nested guards restore the
// previous state; the cast cache is cleared when the outermost one ends.
#include <optional>

#include <torch/types.h>

#include "accel/amp/mixed_precision.h"
#include "accel/util/export.h"

namespace accel {

/// The autocast dtype of a mode (undefined for `no`).
ACCEL_API std::optional<torch::ScalarType> autocast_dtype(MixedPrecision mp);

class ACCEL_API [[nodiscard]] AutocastGuard {
 public:
  /// Autocast on `device_type` to `dtype`; `enabled=false` leaves it off
  /// (so code can hold a guard unconditionally).
  AutocastGuard(torch::DeviceType device_type, torch::ScalarType dtype, bool enabled = true);
  /// Autocast for a mixed-precision mode on a device (no-op for `no`).
  AutocastGuard(torch::Device device, MixedPrecision mp);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  void enter(torch::DeviceType device_type, torch::ScalarType dtype, bool enabled);
  at::DeviceType device_type_ = at::kCPU;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
  bool active_ = false;
};

}  // namespace accel
