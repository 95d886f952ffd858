#pragma once
// What accel's GEMM ops do under autocast, as at::linear does: cast their
// inputs to autocast's type for the device (the same cached casts of
// weights), then run with autocast off, so the ATen calls inside them
// neither cast again nor turn their float32 steps into something else.
#include <ATen/autocast_mode.h>
#include <torch/types.h>

namespace accel::detail {

/// Autocast switched off for one device type in this scope.
class AutocastOff {
 public:
  explicit AutocastOff(c10::DeviceType device) : device_(device), was_(at::autocast::is_autocast_enabled(device)) {
    at::autocast::set_autocast_enabled(device_, false);
  }
  ~AutocastOff() { at::autocast::set_autocast_enabled(device_, was_); }
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  c10::DeviceType device_;
  bool was_;
};

/// `t` as a GEMM under autocast on `device` takes it: cast to autocast's
/// type when autocast is on there (undefined stays undefined).
inline torch::Tensor autocast_gemm_input(const torch::Tensor& t, c10::DeviceType device) {
  if (!t.defined() || !at::autocast::is_autocast_enabled(device)) return t;
  return at::autocast::cached_cast(at::autocast::get_autocast_dtype(device), t, device);
}

}  // namespace accel::detail
