#pragma once
// AcceleratorOptions: how an Accelerator trains. Each unset option takes
// what `accel launch` (or Accelerate's launcher) put in the environment,
// else Accelerate's default; a value set in code wins over the environment.
//
//   accel::Accelerator acc(accel::AcceleratorOptions()
//                              .mixed_precision("bf16")
//                              .gradient_accumulation_steps(4));
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "accel/amp/grad_scaler_options.h"
#include "accel/amp/mixed_precision.h"
#include "accel/checkpoint/project_config.h"
#include "accel/gradient_state.h"
#include "accel/parallel/ddp_options.h"
#include "accel/parallel/mesh/parallelism_config.h"
#include "accel/parallel/sharding_config.h"
#include "accel/parallel/sharding_options.h"
#include "accel/tracking/transfer_progress.h"
#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel {

class GeneralTracker;

struct ACCEL_API AcceleratorOptions {
  /// "no", "fp16" or "bf16". Unset: ACCELERATE_MIXED_PRECISION, else "no".
  TORCH_ARG(std::optional<MixedPrecision>, mixed_precision) = std::nullopt;

 public:  // TORCH_ARG leaves the section private
  AcceleratorOptions& mixed_precision(const std::string& name) {
    mixed_precision_ = parse_mixed_precision(name);
    return *this;
  }
  /// Unset: ACCELERATE_GRADIENT_ACCUMULATION_STEPS, else 1. Give this or
  /// the plugin, not both.
  TORCH_ARG(std::optional<int64_t>, gradient_accumulation_steps) = std::nullopt;
  TORCH_ARG(std::optional<GradientAccumulationPlugin>, gradient_accumulation_plugin) = std::nullopt;
  /// Train on the CPU even with GPUs present. Unset: ACCELERATE_USE_CPU.
  TORCH_ARG(std::optional<bool>, cpu) = std::nullopt;

  /// Data loaders (see data/prepare.h): cut each batch across ranks
  /// instead of giving each rank whole batches.
  TORCH_ARG(bool, split_batches) = false;
  TORCH_ARG(bool, even_batches) = true;
  TORCH_ARG(std::optional<bool>, dispatch_batches) = std::nullopt;
  /// The shuffle seed of every prepared loader (Accelerate's data_seed).
  TORCH_ARG(std::optional<uint64_t>, data_seed) = std::nullopt;
  /// Asynchronous host-to-device copies of batches (pair with pin_memory).
  TORCH_ARG(bool, non_blocking) = false;

  /// Step prepared schedulers only when the optimizer stepped, and
  /// num_processes times (see optim/accelerated_scheduler.h).
  TORCH_ARG(bool, step_scheduler_with_optimizer) = true;
  /// Move prepared models and batches to the process's device.
  TORCH_ARG(bool, device_placement) = true;
  TORCH_ARG(DDPOptions, ddp) = {};
  /// Sharded data parallelism (ZeRO-1/2, FSDP NO_SHARD / SHARD_GRAD_OP) in
  /// place of DDP when distributed: see parallel/sharding_options.h and
  /// docs/sharding.md. Unset: not sharded.
  TORCH_ARG(std::optional<ShardingOptions>, sharding) = std::nullopt;
  /// How the world is split into data-parallel replication and sharding,
  /// tensor and pipeline parallel (Accelerate's parallelism_config): the
  /// Accelerator builds its DeviceMesh, replicates over the mesh's data-
  /// parallel ranks only and gives each data-parallel rank its own batches
  /// (docs/parallelism.md). Unset: ParallelismConfig::from_env
  /// (ACCELERATE_USE_PARALLELISM_CONFIG and PARALLELISM_CONFIG_*), else
  /// plain data parallel over every process.
  TORCH_ARG(std::optional<ParallelismConfig>, parallelism_config) = std::nullopt;
  /// fp16's dynamic loss scaling.
  TORCH_ARG(GradScalerOptions, scaler) = {};
  /// Keep the model in the mixed-precision dtype with fp32 master weights
  /// in the optimizer (apex O2) instead of fp32 weights under autocast.
  TORCH_ARG(bool, master_weights) = false;
  /// Step prepared torch::optim::Adam, AdamW and SGD with ATen's fused
  /// multi-tensor kernels when their parameters are on CUDA (see
  /// optim/fused_step.h); false keeps LibTorch's per-tensor step().
  TORCH_ARG(bool, fused_optimizer_step) = true;

  /// Accelerator::capture_step records the step as a CUDA graph and replays
  /// it (graph/captured_step.h); off, or on a CPU, it runs the step as is.
  TORCH_ARG(bool, cuda_graph) = false;

  /// Where save_state/load_state put checkpoints without a folder, and
  /// file trackers their runs (logging_dir).
  TORCH_ARG(ProjectConfiguration, project_config) = {};
  /// The bar save_state and load_state show on the main process when a
  /// checkpoint is large (tracking/transfer_progress.h).
  TORCH_ARG(TransferProgressOptions, checkpoint_progress) = {};

  /// Experiment trackers that init_trackers starts, by Accelerate's names:
  /// "tensorboard", "wandb", or "all" for every tracker accel offers (see
  /// tracking/trackers.h). An unknown name is an error at construction.
  TORCH_ARG(std::vector<std::string>, log_with) = {};
  /// Trackers of your own (tracking/tracker.h), started with those.
  TORCH_ARG(std::vector<std::shared_ptr<GeneralTracker>>, trackers) = {};

  /// Where unset options are read from (tests pass a map).
  TORCH_ARG(EnvLookup, env) = process_env();
};

/// The options with every unset value filled from the environment or the
/// default; throws naming a bad variable or a contradiction.
struct ACCEL_API ResolvedOptions {
  MixedPrecision mixed_precision = MixedPrecision::no;
  GradientAccumulationPlugin accumulation;
  std::optional<bool> cpu;
  /// Checked (check_sharding_options); nullopt: DDP.
  std::optional<ShardingOptions> sharding;
  /// The whole config when it came from the launcher's variables (a
  /// DeepSpeed file, ACCELERATE_DEEPSPEED_* or FSDP_*), for what applies
  /// beyond the fields above: the engine's gradient clipping, the fp16
  /// scaler, the batch sizes and optimizer checked at prepare(). nullopt
  /// when sharding was set in code or no such variable is set.
  std::optional<ShardingConfig> sharding_config;
  /// Validated; nullopt: no mesh (data parallel over every process).
  std::optional<ParallelismConfig> parallelism;
  /// Launcher settings that the code overrides (the code wins, as in
  /// Accelerate): said once by the main process, so a flag that has no
  /// effect does not pass silently.
  std::vector<std::string> overridden;
};
ACCEL_API ResolvedOptions resolve(const AcceleratorOptions& options);

}  // namespace accel
