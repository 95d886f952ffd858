#pragma once
// ShardingOptions: sharded data parallel training (ZeRO / FSDP). Under
// no_shard, shard_optimizer and shard_grad_op each rank still holds the
// whole model; what is split across the N ranks is the optimizer state (and
// fp32 master weights), and under shard_grad_op the gradients too
// (parallel/zero/zero_engine.h). full_shard splits the parameters as well,
// at the model's units (parallel/fsdp/fully_sharded_model.h). See
// docs/sharding.md.
//
//   accel::Accelerator acc(accel::AcceleratorOptions().sharding(
//       accel::ShardingOptions().strategy(accel::ShardingStrategy::shard_grad_op)));
//   auto [model, opt] = acc.prepare(net, optimizer);   // model and optimizer together
//
// DeepSpeed's zero_optimization.stage 0/1/2 and FSDP's NO_SHARD /
// SHARD_GRAD_OP / FULL_SHARD map onto the strategies below.
#include <c10/core/ScalarType.h>
#include <torch/arg.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "accel/util/export.h"

namespace accel {

enum class ShardingStrategy {
  /// Every rank keeps everything; gradients are all-reduced (= DDP). ZeRO stage 0, FSDP NO_SHARD.
  no_shard,
  /// ZeRO-1: optimizer state (and fp32 masters) sharded; full gradients
  /// reduce-scattered once per optimizer step.
  shard_optimizer,
  /// ZeRO-2 / FSDP SHARD_GRAD_OP: gradients also sharded, reduced in
  /// buckets while backward runs.
  shard_grad_op,
  /// ZeRO-3 / FSDP FULL_SHARD: the parameters too. Each rank keeps 1/N of
  /// each sharded unit's parameters; a unit's are all-gathered just before
  /// its forward (and again before its backward) and freed after; its
  /// gradients are reduce-scattered as backward leaves it.
  full_shard,
  /// FSDP's HYBRID_SHARD: full_shard within groups of hybrid_shard_size
  /// ranks (by default each node's), the groups replicating each other:
  /// gradients are reduce-scattered in the group, then all-reduced across
  /// the groups. All-gathers stay inside a node.
  hybrid_shard,
};
/// "no_shard", "shard_optimizer", "shard_grad_op", "full_shard", "hybrid_shard" (the names zero_layout.json uses).
ACCEL_API std::string to_string(ShardingStrategy strategy);
/// The inverse of to_string; throws std::invalid_argument naming `name`.
ACCEL_API ShardingStrategy parse_sharding_strategy(const std::string& name);

enum class OffloadDevice { none, cpu, nvme };
/// "none", "cpu", "nvme" (DeepSpeed's offload_optimizer.device values).
ACCEL_API std::string to_string(OffloadDevice device);
/// The inverse of to_string; throws std::invalid_argument naming `name`.
ACCEL_API OffloadDevice parse_offload_device(const std::string& name);

/// FSDP2's reshard_after_forward: what a unit keeps of its gathered
/// parameters between its forward and its backward.
///   true         nothing: gathered again over the whole shard group before
///                backward (FULL_SHARD);
///   false        all of them (SHARD_GRAD_OP): no gather before backward;
///   an int k     a 1/k slice, k a divisor of the shard group's size: the
///                group's ranks in runs of k consecutive ones each keep
///                their slice, and the gather before backward runs inside
///                the run only (k = the ranks of one node keeps that gather
///                off the network). k = 1 is false, k = the group's size is
///                true, as in FSDP2.
/// Accelerate's FSDP plugin takes only the bool (FSDP_RESHARD_AFTER_FORWARD);
/// the int is set in code.
class ACCEL_API ReshardAfterForward {
 public:
  ReshardAfterForward(bool reshard = true) : size_(reshard ? 0 : 1) {}  // NOLINT: a bool reads as FSDP2's
  template <typename Int, std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>, int> = 0>
  ReshardAfterForward(Int ranks) : size_(static_cast<int64_t>(ranks)), is_size_(true) {}  // NOLINT: as FSDP2's int

  /// The ranks a slice is kept across, for a shard group of `group_size`
  /// ranks: group_size for true, 1 for false. Throws std::invalid_argument
  /// naming an int that does not divide group_size.
  int64_t ranks(int64_t group_size) const;
  /// false, or the int 1: the gathered parameters stay until backward.
  bool keeps_everything() const { return size_ == 1; }
  /// Whether an int was given (and which).
  bool is_size() const { return is_size_; }
  int64_t size() const { return size_; }
  /// true, false, or the int.
  std::string str() const;

 private:
  int64_t size_;  // 0: true; 1: false; else the int
  bool is_size_ = false;
};

struct ACCEL_API OffloadOptions {
  /// Where optimizer state and fp32 master weights live.
  TORCH_ARG(OffloadDevice, device) = OffloadDevice::none;
  /// Folder of the NVMe pages; required when device == nvme.
  TORCH_ARG(std::filesystem::path, nvme_path);
  /// Page-locked host memory for the offloaded tensors (faster copies;
  /// never the pages of files, which the kernel must be free to evict).
  TORCH_ARG(bool, pin_memory) = true;
  /// NVMe page I/O threads (ZeRO-1/2's optimizer pages). >= 1.
  TORCH_ARG(int, io_threads) = 4;
  /// offload_param with device nvme only (DeepSpeed's offload_param.max_in_cpu
  /// and its default): elements of parameter shards each rank keeps in host
  /// memory rather than in files. The units are taken in the order they are
  /// made (the model's sharded units, then the root) and their shards laid
  /// end to end: the units within the first max_in_cpu elements stay in
  /// memory, the rest go to files. 0: every unit in files. >= 0.
  TORCH_ARG(int64_t, max_in_cpu) = 1'000'000'000;
  /// ZeRO-Offload's one-step delayed parameter update (Adam/AdamW): the CPU
  /// update of step t runs while the device computes step t+1's forward and
  /// backward, and reaches the model at step t+1's optimizer step. So the
  /// gradients of step t+1 are taken at parameters without step t's update
  /// (the staleness DeepSpeed's paper accepts after the first steps); the
  /// optimizer's own trajectory is Adam's. Off: exact, the update is waited for.
  TORCH_ARG(bool, delayed_update) = false;
};

/// Which units (unit/unit.h) shard under full_shard, as Accelerate's
/// FSDP_AUTO_WRAP_POLICY names the policies. Parameters outside every
/// sharded unit belong to the root unit (the whole model), which is
/// gathered for the whole forward and backward.
enum class WrapPolicy {
  /// Units whose class is in transformer_cls_to_wrap (every unit when the list is empty).
  transformer_based,
  /// Units holding at least min_num_params parameters of their own (not
  /// counting those of sharded units inside them), chosen innermost first.
  size_based,
  /// None: the root unit holds every parameter.
  no_wrap,
};
/// "TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP" (Accelerate's names).
ACCEL_API std::string to_string(WrapPolicy policy);
/// The inverse of to_string, any case; throws std::invalid_argument naming `name`.
ACCEL_API WrapPolicy parse_wrap_policy(const std::string& name);

/// How save_state writes a model whose parameters are sharded
/// (full_shard, hybrid_shard), as Accelerate's FSDP_STATE_DICT_TYPE names it.
/// Under the other strategies every rank holds the whole model, which is
/// written whole either way (the optimizer state is per rank there).
enum class StateDictType {
  /// FULL_STATE_DICT: model.safetensors, gathered unit by unit and written
  /// by the main process; the optimizer state per rank.
  full,
  /// SHARDED_STATE_DICT: each rank writes its slices of the parameters and
  /// of the optimizer state (checkpoint/tensor_slices.h); no rank ever
  /// holds the whole model. load_state reads them back on any number of
  /// processes; `accel merge-weights` joins them into model.safetensors.
  sharded,
};
/// "FULL_STATE_DICT", "SHARDED_STATE_DICT" (Accelerate's names).
ACCEL_API std::string to_string(StateDictType type);
/// The inverse of to_string, any case; throws std::invalid_argument naming `name`.
ACCEL_API StateDictType parse_state_dict_type(const std::string& name);

/// When a unit's gather for backward is issued ahead of its need
/// (FSDP_BACKWARD_PREFETCH, torch's BackwardPrefetch): the unit whose
/// backward comes next (the one that ran forward before the current one)
/// is gathered when the current unit's backward starts (backward_pre) or
/// once its gradients are computed, before they are reduced
/// (backward_post), so that the gather overlaps compute; one more unit
/// gathered at a time.
enum class BackwardPrefetch { none, backward_pre, backward_post };
/// "NO_PREFETCH", "BACKWARD_PRE", "BACKWARD_POST" (Accelerate's names).
ACCEL_API std::string to_string(BackwardPrefetch prefetch);
/// The inverse of to_string, any case, or torch's enum values 1 (BACKWARD_PRE)
/// and 2 (BACKWARD_POST); throws std::invalid_argument naming `name`.
ACCEL_API BackwardPrefetch parse_backward_prefetch(const std::string& name);

/// In which dtypes a sharded unit computes and reduces (FSDP2's
/// MixedPrecisionPolicy), full_shard and hybrid_shard only. The shards, the
/// optimizer's copy, stay in the parameters' own dtype (fp32 masters).
/// Unset: the parameters' dtype and the shards' (fp32) respectively, except
/// that the Accelerator's mixed_precision fp16 / bf16 (without
/// master_weights) sets param_dtype to that dtype, as Accelerate's FSDP
/// plugin does: the gathers then move half the bytes.
struct ACCEL_API MixedPrecisionPolicy {
  /// The gathered parameters' dtype: the model's parameters are views of
  /// the gathered buffer, so they read as this dtype after prepare (their
  /// state dict is still written in their own dtype, from the shards).
  TORCH_ARG(std::optional<c10::ScalarType>, param_dtype) = std::nullopt;
  /// The gradients' dtype in the reduce-scatter (and the all-reduce across
  /// hybrid groups); the result is added to the shard's gradient in the
  /// shard's dtype. bf16 halves the bytes, fp32 keeps the precision.
  TORCH_ARG(std::optional<c10::ScalarType>, reduce_dtype) = std::nullopt;
  /// A sharded unit casts its floating-point input tensors to param_dtype
  /// (FSDP2's cast_forward_inputs). The root unit's inputs are the model's:
  /// autocast (mixed_precision) covers what the root computes.
  TORCH_ARG(bool, cast_forward_inputs) = true;
};

struct ACCEL_API ShardingOptions {
  /// What is split across ranks.
  TORCH_ARG(ShardingStrategy, strategy) = ShardingStrategy::shard_grad_op;
  /// Under full_shard / hybrid_shard, cpu keeps each rank's fp32 parameter
  /// shards, gradient shards and optimizer state in host memory, where the
  /// optimizer steps them (CPU Adam for Adam/AdamW); the shards in the
  /// parameters' dtype stay on the device for the gathers (DeepSpeed ZeRO-3
  /// with offload_optimizer). nvme and delayed_update are not supported there.
  TORCH_ARG(OffloadOptions, offload_optimizer) = {};
  /// full_shard / hybrid_shard only (DeepSpeed's offload_param, FSDP's
  /// offload_params): cpu also keeps the shards the gathers read in host
  /// memory, copied to the device unit by unit, so the device holds only
  /// the units in flight. Implies offload_optimizer cpu (unless that says
  /// nvme). nvme (ZeRO-Infinity; nvme_path required) keeps each unit's
  /// shards, the fp32 masters and the copy the gathers read, in a file of
  /// its own, mapped, under a folder of the process's own in nvme_path
  /// (except the first max_in_cpu elements' units); the optimizer (CPU
  /// Adam) steps them in place there. The files and the folder are removed
  /// when the model and optimizer are gone.
  TORCH_ARG(OffloadOptions, offload_param) = {};
  /// Elements per gradient bucket (DeepSpeed's reduce_bucket_size default). >= 1.
  TORCH_ARG(int64_t, reduce_bucket_size) = 500'000'000;
  /// Reduce buckets asynchronously while backward continues.
  TORCH_ARG(bool, overlap_comm) = true;
  /// save_state also writes the full (gathered) optimizer state in the
  /// non-sharded format, which any number of processes can load.
  TORCH_ARG(bool, consolidated_checkpoint) = false;

  // full_shard and hybrid_shard only.
  TORCH_ARG(WrapPolicy, auto_wrap_policy) = WrapPolicy::transformer_based;
  /// Unit class names for transformer_based (unit/unit.h says how a C++
  /// class answers to a name); each must match a unit of the model.
  TORCH_ARG(std::vector<std::string>, transformer_cls_to_wrap) = {};
  /// For size_based (FSDP_MIN_NUM_PARAMS; torch's size_based_auto_wrap_policy default). >= 1.
  TORCH_ARG(int64_t, min_num_params) = 100'000'000;
  /// Free a unit's gathered parameters after its forward (FSDP2's
  /// reshard_after_forward; false keeps them until its backward: fewer
  /// all-gathers, more memory, FSDP's SHARD_GRAD_OP; an int keeps a slice,
  /// ReshardAfterForward above). The root unit is never freed between its
  /// forward and backward. With an int, a forward without gradients
  /// (evaluation) frees the unit whole: no backward will gather it.
  TORCH_ARG(ReshardAfterForward, reshard_after_forward) = true;
  /// hybrid_shard: ranks per shard group, consecutive ranks together; 0:
  /// the ranks of one node (LOCAL_WORLD_SIZE). Must divide the world size.
  TORCH_ARG(int, hybrid_shard_size) = 0;
  /// Activation checkpointing at the units the wrap policy picks
  /// (FSDP_ACTIVATION_CHECKPOINTING): each recomputes its forward in
  /// backward (unit/checkpoint.h); under full_shard / hybrid_shard inside
  /// the gather its backward needs anyway. The root unit is not. Under the
  /// other strategies too (the wrap policy then only picks the units).
  TORCH_ARG(bool, activation_checkpointing) = false;
  /// What save_state writes of the model (FSDP_STATE_DICT_TYPE).
  TORCH_ARG(StateDictType, state_dict_type) = StateDictType::full;
  /// Gathers for backward issued ahead (BackwardPrefetch). Under the other
  /// strategies nothing is freed, so there is nothing to prefetch.
  TORCH_ARG(BackwardPrefetch, backward_prefetch) = BackwardPrefetch::none;
  /// FSDP_FORWARD_PREFETCH: a unit's forward also gathers the unit that
  /// ran after it in the previous forward (every rank predicts the same),
  /// so that its gather overlaps this unit's compute.
  TORCH_ARG(bool, forward_prefetch) = false;
  /// A prefetch (either kind) is skipped when it would make the parameters
  /// gathered at once exceed this many elements (DeepSpeed's
  /// stage3_max_live_parameters); 0: no bound. The unit about to run is
  /// always gathered.
  TORCH_ARG(int64_t, max_live_parameters) = 0;
  /// The compute and reduction dtypes of the sharded units (MixedPrecisionPolicy).
  TORCH_ARG(MixedPrecisionPolicy, mixed_precision_policy) = {};
};

/// Whether `strategy` shards the parameters (full_shard, hybrid_shard).
inline bool shards_parameters(ShardingStrategy strategy) {
  return strategy == ShardingStrategy::full_shard || strategy == ShardingStrategy::hybrid_shard;
}

/// Throws std::invalid_argument naming the option and its bad value
/// (reduce_bucket_size < 1, io_threads < 1, nvme without nvme_path,
/// max_in_cpu < 0 or set where it means nothing).
ACCEL_API void check_sharding_options(const ShardingOptions& options);

}  // namespace accel
