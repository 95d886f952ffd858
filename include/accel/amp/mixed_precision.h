#pragma once
// The mixed-precision modes, by Accelerate's names. Apart from autocast.h,
// which pulls in ATen's headers, so that AcceleratorOptions can name one
// cheaply.
#include <string>

#include "accel/util/export.h"

namespace accel {

/// Mixed-precision modes, with Accelerate's names ("no", "fp16", "bf16").
enum class MixedPrecision { no, fp16, bf16 };
/// Accelerate's name, any case ("" is "no"); throws std::invalid_argument
/// naming the value and the choices.
ACCEL_API ACCEL_API MixedPrecision parse_mixed_precision(const std::string& name);
ACCEL_API ACCEL_API std::string to_string(MixedPrecision mp);

}  // namespace accel
