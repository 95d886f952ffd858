#pragma once
// Activation checkpointing at a unit (FSDP_ACTIVATION_CHECKPOINTING,
// gradient checkpointing): the block's forward runs without recording
// anything for backward; when backward reaches the block, its forward runs
// again from the saved inputs, this time recording, and backward goes
// through that (PyTorch's reentrant checkpoint). Activation memory falls to
// the blocks' inputs, for one more forward of each block.
//
// The random number generators (the CPU's and the inputs' device's) are
// put back as they were for the recompute, so dropout draws the same mask.
// Under parameter sharding the recompute runs inside the unit's backward,
// once its parameters are gathered for it: one gather per unit in backward.
//
// Units call this themselves (Unit::operator(), UnitSlot::set_checkpoint);
// it is public for blocks that are not units.
#include <functional>
#include <vector>

#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

/// `run(inputs)`: the block's forward on these tensors. Returns its output,
/// whose backward recomputes it. Without grad mode, just `run(inputs)`.
ACCEL_API torch::Tensor checkpointed(const std::vector<torch::Tensor>& inputs,
                                     std::function<torch::Tensor(const std::vector<torch::Tensor>&)> run);

}  // namespace accel
