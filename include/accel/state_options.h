#pragma once
// StateOptions: how the process state (state.h) is set up, LibTorch style:
//   accel::ProcessState::init(accel::StateOptions().cpu(true).timeout(std::chrono::seconds(60)));
// Apart from state.h, which pulls in c10d's process-group headers.
#include <chrono>
#include <optional>

#include <torch/arg.h>

#include "accel/dist/backend.h"
#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API StateOptions {
  /// Force the CPU even when GPUs are present. Unset: ACCELERATE_USE_CPU.
  TORCH_ARG(std::optional<bool>, cpu) = std::nullopt;
  /// Unset: NCCL on CUDA, Gloo on CPU (or ACCEL_BACKEND).
  TORCH_ARG(std::optional<Backend>, backend) = std::nullopt;
  /// Rendezvous and collective timeout.
  TORCH_ARG(std::chrono::milliseconds, timeout) = kDefaultTimeout;
  /// Where the launcher's variables are read from.
  TORCH_ARG(EnvLookup, env) = process_env();
};

}  // namespace accel
