#pragma once
// The random state of a process, for exact resume: the CPU's default
// generator and each visible CUDA device's, as byte tensors named "cpu",
// "cuda:0", "cuda:1", ... (a safetensors file per rank in save_state:
// random_states_<rank>.safetensors). Dropout, randperm and every other
// draw from the default generators continue after a load as they would
// have without the stop.
#include <string>

#include "accel/checkpoint/safetensors.h"
#include "accel/util/export.h"

namespace accel {

/// The states of this process's default generators.
ACCEL_API safetensors::NamedTensors random_states();

/// Restores states from random_states(). A state for a CUDA device this
/// process does not see, an unknown name, or a state the generator refuses
/// throws std::runtime_error naming `source` and the generator; nothing is
/// restored unless all are valid names.
ACCEL_API void load_random_states(const safetensors::OrderedTensors& states, const std::string& source);

}  // namespace accel
