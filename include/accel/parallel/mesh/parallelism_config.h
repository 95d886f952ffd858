#pragma once
// How the world is split for composed parallelism, as Accelerate 1.15's
// ParallelismConfig: data-parallel replication (dp_replicate), data-parallel
// sharding (dp_shard), context parallel (cp) and tensor parallel (tp), plus
// accel's pipeline parallel (pp), which Accelerate does not have.
//
// Only the configuration and the mesh layout it implies live here; the
// process groups are built by DeviceMesh (not yet in this slice).
#include <optional>
#include <string>
#include <vector>

#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API ParallelismConfig {
  int dp_replicate_size = 1;
  int dp_shard_size = 1;
  int tp_size = 1;
  int cp_size = 1;
  /// accel's addition; Accelerate has no training pipeline parallelism.
  int pp_size = 1;
  /// Accelerate's TorchContextParallelConfig: "allgather" or "alltoall".
  std::string cp_comm_strategy = "allgather";

  /// Accelerate's __post_init__ checks: every size at least 1, a known
  /// cp_comm_strategy where cp_size > 1, and tp/cp not composed with pure replication
  /// (dp_replicate_size > 1 with dp_shard_size == 1). Throws
  /// std::invalid_argument naming the offending values.
  void validate() const;

  /// Product of every size.
  int total_size() const;

  /// Throws std::invalid_argument naming every size when total_size() is
  /// not `world_size` (Accelerate's _validate_accelerator).
  void check_world_size(int world_size) const;

  /// The active (size > 1) dimensions in mesh order: pp, dp_replicate,
  /// dp_shard, cp, tp (Accelerate's _get_mesh order, pp outermost as in
  /// TorchTitan). Empty when every size is 1.
  std::vector<std::string> mesh_dim_names() const;
  /// The sizes of mesh_dim_names(), in the same order.
  std::vector<int> mesh_shape() const;

  /// The dimensions Accelerate flattens into one: "dp" (dp_replicate,
  /// dp_shard), "dp_shard_cp" (dp_shard, cp) and "dp_cp" (dp_replicate,
  /// dp_shard, cp), each listed with its active members; a flattened dim
  /// with no active member is left out, as Accelerate does.
  struct Flattened {
    std::string name;
    std::vector<std::string> members;
  };
  std::vector<Flattened> flattened_dims() const;

  /// Accelerate's Accelerator reads PARALLELISM_CONFIG_{DP_REPLICATE,
  /// DP_SHARD,TP,CP}_SIZE and PARALLELISM_CONFIG_CP_COMM_STRATEGY only when
  /// ACCELERATE_USE_PARALLELISM_CONFIG is "true" (any case); accel adds
  /// PARALLELISM_CONFIG_PP_SIZE. nullopt when the switch is not set. The
  /// result is validated.
  static std::optional<ParallelismConfig> from_env(const EnvLookup& env);
};

/// Coordinates of `rank` in a row-major mesh of `shape`, as
/// torch.arange(world).reshape(shape) places ranks (init_device_mesh).
ACCEL_API std::vector<int> mesh_coordinates(const std::vector<int>& shape, int rank);

}  // namespace accel
