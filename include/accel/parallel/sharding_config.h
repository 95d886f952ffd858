#pragma once
// ShardingConfig: what a DeepSpeed JSON file, or the variables `accel
// launch` / `accelerate launch` set (ACCELERATE_USE_DEEPSPEED,
// ACCELERATE_DEEPSPEED_*, ACCELERATE_USE_FSDP, FSDP_*), say about sharded
// training, resolved with Accelerate's rules (accelerate/utils/dataclasses.py
// DeepSpeedPlugin, FullyShardedDataParallelPlugin; accelerator.py
// _prepare_deepspeed):
//
//   zero_optimization.stage 0 / 1 / 2   -> no_shard / shard_optimizer / shard_grad_op
//                           3           -> error: ZeRO-3 is not supported yet
//   FSDP_SHARDING_STRATEGY NO_SHARD (3) / SHARD_GRAD_OP (2) -> no_shard / shard_grad_op
//                          FULL_SHARD (1), HYBRID_* (4, 5)  -> error: not supported yet
//   "auto" values take the Accelerator's settings (the context below):
//     gradient_accumulation_steps -> the Accelerator's (else left to it)
//     gradient_clipping           -> the Accelerator's, else 1.0 (Accelerate's fill)
//     fp16/bf16.enabled           -> the Accelerator's mixed precision
//     train_micro_batch_size_per_gpu, train_batch_size -> the prepared loader's
//                                    batch size (check_batch_sizes, at prepare)
//     reduce_bucket_size          -> hidden_size^2: the context's hidden size, else
//                                    the prepared model's (fill_from_model, at prepare)
// A value given both in the file and to the Accelerator (in code or by its
// ACCELERATE_* variable) must agree, else std::invalid_argument names both.
// A bad value names the key, the value and what was expected.
//
// The Accelerator calls sharding_config_from_env() when its options set no
// sharding, and the prepare-time functions at the end in prepare(); a
// program can also read a file itself (giving the hidden size, or calling
// fill_from_model, where the file's reduce_bucket_size is "auto"):
//
//   auto cfg = accel::load_deepspeed_config("ds_config.json", {.hidden_size = 768, .world_size = 2});
//   if (cfg.sharding) options.sharding(*cfg.sharding);
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "accel/amp/grad_scaler_options.h"
#include "accel/amp/mixed_precision.h"
#include "accel/parallel/sharding_options.h"
#include "accel/util/env.h"
#include "accel/util/export.h"

// Only named by reference here; declared rather than included, so that this
// header (and AcceleratorOptions through it) stays free of LibTorch's
// module, optimizer and tensor headers.
namespace torch::nn {
class Module;
}  // namespace torch::nn
namespace torch::optim {
class Optimizer;
}  // namespace torch::optim

namespace accel {

/// What the Accelerator knows when a config is resolved: the values "auto"
/// takes, and the values an explicit entry must agree with. Unset means the
/// user did not give it (neither in code nor in the environment).
struct ACCEL_API ShardingConfigContext {
  std::optional<int64_t> gradient_accumulation_steps;
  std::optional<MixedPrecision> mixed_precision;
  std::optional<double> gradient_clipping;
  /// The model's hidden size, for reduce_bucket_size "auto" (Accelerate reads
  /// model.config.hidden_size). Unset: fill_from_model() takes it from the model.
  std::optional<int64_t> hidden_size;
  int world_size = 1;
};

/// The file's "optimizer" section. accel builds no optimizer from it (the one
/// given to prepare() is used, as with Accelerate's DummyOptim's absence):
/// check_optimizer() checks that it is the one the section describes.
struct ACCEL_API DeepSpeedOptimizerSection {
  std::string type;       // as written: "Adam", "AdamW", ...
  bool decoupled = true;  // AdamW-style decay: type AdamW, or Adam with adam_w_mode (DeepSpeed's default true)
  std::map<std::string, double> params;  // explicit numbers: lr, eps, weight_decay, beta1, beta2
};

struct ACCEL_API ShardingConfig {
  /// nullopt: no sharding asked for (plain DDP).
  std::optional<ShardingOptions> sharding;
  std::optional<int64_t> gradient_accumulation_steps;
  /// Max norm of the global gradient clip applied by the engine at each step.
  std::optional<double> gradient_clipping;
  /// nullopt: "auto" or absent, i.e. the prepared loader's batch size.
  std::optional<int64_t> train_micro_batch_size_per_gpu;
  std::optional<int64_t> train_batch_size;
  /// From fp16/bf16 "enabled"; nullopt when the file enables neither and says nothing.
  std::optional<MixedPrecision> mixed_precision;
  /// fp16 dynamic loss scaling, DeepSpeed's defaults where the file is silent:
  /// init_scale 2^initial_scale_power (16), growth_interval loss_scale_window
  /// (1000), hysteresis (2), min_scale min_loss_scale (1). The Accelerator's
  /// scaler takes these in place of AcceleratorOptions::scaler.
  std::optional<GradScalerOptions> scaler;
  std::optional<DeepSpeedOptimizerSection> optimizer;
  /// reduce_bucket_size is "auto" and the context had no hidden size:
  /// sharding->reduce_bucket_size() holds DeepSpeed's default until
  /// fill_from_model() replaces it with the model's hidden_size^2.
  bool reduce_bucket_size_from_model = false;
  /// Where it came from, for messages ("ds_config.json", "environment").
  std::string source;
};

/// Parses DeepSpeed JSON text. Throws std::invalid_argument naming `source`,
/// the key, the value and what was expected, or both values of a conflict.
ACCEL_API ShardingConfig parse_deepspeed_config(const std::string& json_text, const std::string& source,
                                                const ShardingConfigContext& context = {});
/// Reads and parses a file (errors name the path).
ACCEL_API ShardingConfig load_deepspeed_config(const std::filesystem::path& path,
                                               const ShardingConfigContext& context = {});

/// From the launcher's variables: ACCELERATE_USE_DEEPSPEED with either
/// ACCELERATE_DEEPSPEED_CONFIG_FILE (read as above; Accelerate's rule that the
/// accelerate config must then not also set the file's keys is kept, via
/// ACCELERATE_CONFIG_DS_FIELDS) or ACCELERATE_DEEPSPEED_ZERO_STAGE (default 2),
/// ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE, ..._OFFLOAD_OPTIMIZER_NVME_PATH,
/// ..._OFFLOAD_PARAM_DEVICE, ..._OFFLOAD_PARAM_NVME_PATH, ACCELERATE_GRADIENT_CLIPPING;
/// or ACCELERATE_USE_FSDP with FSDP_VERSION, FSDP_SHARDING_STRATEGY (v1) /
/// FSDP_RESHARD_AFTER_FORWARD (v2), FSDP_OFFLOAD_PARAMS (true: optimizer state
/// and master weights offloaded to the CPU; parameters stay on the device,
/// which needs FULL_SHARD to change). Neither set: an empty config (no sharding).
ACCEL_API ShardingConfig sharding_config_from_env(const EnvLookup& env, const ShardingConfigContext& context = {});

/// Accelerate's hidden_size for a module, which has no config to hold it:
/// the size its parameters share most often among their first two
/// dimensions (a Linear's out and in features, an Embedding's rows and
/// width, a norm's width; a convolution's kernel dimensions do not count),
/// the larger of sizes shared equally often. For a transformer that is the
/// residual width, which every projection, embedding and norm has, where
/// the vocabulary and MLP widths appear a few times each. nullopt: no
/// parameter has a dimension.
ACCEL_API std::optional<int64_t> model_hidden_size(const torch::nn::Module& model);

/// At prepare(), with the first model: fills reduce_bucket_size "auto" as
/// Accelerate does (accelerator.py _prepare_deepspeed), hidden_size *
/// hidden_size with model_hidden_size(model). Throws std::invalid_argument
/// naming the key when the model has no hidden size. Nothing to fill: no-op.
ACCEL_API void fill_from_model(ShardingConfig& config, const torch::nn::Module& model);

/// At prepare(), once the loader's per-process batch size is known: fills
/// train_micro_batch_size_per_gpu / train_batch_size (micro * accumulation *
/// world_size) and throws naming both when an explicit one disagrees.
ACCEL_API void check_batch_sizes(ShardingConfig& config, int64_t micro_batch_per_process, int64_t accumulation_steps,
                                 int world_size);

/// Throws naming both when the file's optimizer section does not describe
/// `optimizer` (type Adam/AdamW by its decay, explicit lr, betas, eps,
/// weight_decay against its first param group). No section: nothing to check.
ACCEL_API void check_optimizer(const ShardingConfig& config, const torch::optim::Optimizer& optimizer);

}  // namespace accel
