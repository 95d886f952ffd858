#pragma once
// set_seed: Accelerate's accelerate.utils.set_seed for a LibTorch program.
// Seeds every generator a C++ training program draws from: LibTorch's CPU
// generator and each CUDA device's (torch::manual_seed), and C's rand().
// Call it on every rank; with `device_specific` each rank gets seed + rank,
// so that random augmentations differ between ranks (the prepared loaders'
// shuffling does not depend on it: it agrees on one seed across ranks).
#include <cstdint>

#include "accel/util/export.h"

namespace accel {

/// `deterministic`: LibTorch's deterministic algorithms from now on
/// (torch.use_deterministic_algorithms(True)); slower, and ops without a
/// deterministic implementation then throw.
ACCEL_API void set_seed(uint64_t seed, bool device_specific = false, bool deterministic = false);

}  // namespace accel
