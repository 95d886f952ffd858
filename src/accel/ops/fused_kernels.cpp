#include "accel/ops/fused_kernels.h"

#include "accel/ops/cuda_kernels.h"
#include "accel/util/env.h"

namespace accel {

bool fused_kernels_enabled() {
  static const bool enabled = ACCEL_CUDA_KERNELS && env_bool(process_env(), "ACCEL_FUSED_KERNELS").value_or(true);
  return enabled;
}

}  // namespace accel
