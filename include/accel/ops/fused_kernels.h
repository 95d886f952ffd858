#pragma once
// Whether accel's ops (accel/ops/) run accel's own CUDA kernels on CUDA
// tensors. They do where the build has them (accel/ops/cuda_kernels.h:
// compiled where a CUDA compiler was found) unless the environment says
// ACCEL_FUSED_KERNELS=0: then every op runs its ATen composition, the same
// math in more kernels. That switch is for checking and measuring a program
// both ways without rebuilding it (bench/kernels_check.sh); each op's
// options also have a fused_kernel(false) for one call.
#include "accel/util/export.h"

namespace accel {

/// Built with the kernels and not switched off by ACCEL_FUSED_KERNELS (read
/// once, at the first call; a value other than 1/0, true/false, yes/no,
/// on/off throws std::invalid_argument naming it).
ACCEL_API bool fused_kernels_enabled();

}  // namespace accel
