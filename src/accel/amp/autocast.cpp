#include "accel/amp/autocast.h"

#include <algorithm>
#include <stdexcept>

#include <ATen/autocast_mode.h>

#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {

MixedPrecision parse_mixed_precision(const std::string& name) {
  const std::string n = lower(name);
  if (n == "no" || n.empty()) return MixedPrecision::no;
  if (n == "fp16") return MixedPrecision::fp16;
  if (n == "bf16") return MixedPrecision::bf16;
  fail<std::invalid_argument>("unknown mixed precision '", name, "': expected 'no', 'fp16' or 'bf16'");
}

std::string to_string(MixedPrecision mp) {
  switch (mp) {
    case MixedPrecision::no: return "no";
    case MixedPrecision::fp16: return "fp16";
    case MixedPrecision::bf16: return "bf16";
  }
  return "?";
}

std::optional<torch::ScalarType> autocast_dtype(MixedPrecision mp) {
  if (mp == MixedPrecision::fp16) return torch::kHalf;
  if (mp == MixedPrecision::bf16) return torch::kBFloat16;
  return std::nullopt;
}

AutocastGuard::AutocastGuard(torch::DeviceType device_type, torch::ScalarType dtype, bool enabled) {
  enter(device_type, dtype, enabled);
}

AutocastGuard::AutocastGuard(torch::Device device, MixedPrecision mp) {
  auto dtype = autocast_dtype(mp);
  enter(device.type(), dtype.value_or(torch::kFloat), dtype.has_value());
}

void AutocastGuard::enter(torch::DeviceType device_type, torch::ScalarType dtype, bool enabled) {
  if (!enabled) return;
  device_type_ = device_type;
  prev_enabled_ = at::autocast::is_autocast_enabled(device_type);
  prev_dtype_ = at::autocast::get_autocast_dtype(device_type);
  at::autocast::set_autocast_enabled(device_type, true);
  at::autocast::set_autocast_dtype(device_type, dtype);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, prev_enabled_);
  at::autocast::set_autocast_dtype(device_type_, prev_dtype_);
}

}  // namespace accel
