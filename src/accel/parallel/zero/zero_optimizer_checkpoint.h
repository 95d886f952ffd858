#pragma once
// ZeRO's OptimizerCheckpoint (checkpoint/optimizer_checkpoint.h): each
// rank's shard and the layout (parallel/zero/zero_checkpoint.h), and with
// consolidated_checkpoint the gathered full state as well. Loading takes
// the shards when the number of processes is the same and they are there,
// else the full state; without one, another number of processes is refused.
#include <memory>

#include "accel/checkpoint/optimizer_checkpoint.h"
#include "accel/parallel/zero/zero_engine.h"

namespace accel::zero {

std::unique_ptr<OptimizerCheckpoint> zero_optimizer_checkpoint(ZeroEngine& engine);

}  // namespace accel::zero
