#include "accel/util/seed.h"

#include <cstdlib>

#include <ATen/Context.h>
#include <torch/utils.h>

#include "accel/state.h"

namespace accel {

void set_seed(uint64_t seed, bool device_specific, bool deterministic) {
  if (device_specific) seed += static_cast<uint64_t>(state().rank());
  // torch::manual_seed seeds the CPU generator and, where CUDA is present,
  // every device's (Accelerate's torch.manual_seed + cuda.manual_seed_all).
  torch::manual_seed(seed);
  std::srand(static_cast<unsigned>(seed));
  if (deterministic) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
}

}  // namespace accel
