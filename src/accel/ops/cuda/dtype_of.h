#pragma once
// c10::ScalarType -> the kernels' DType (for the wrappers, which see LibTorch).
#include <optional>

#include <c10/core/ScalarType.h>

#include "accel/ops/cuda/dtype.h"

namespace accel::kernels {

/// The kernels' name for `t`; nullopt for a type they do not take.
std::optional<DType> dtype_of(c10::ScalarType t);

}  // namespace accel::kernels
