#pragma once
// The world split into the named dimensions of a ParallelismConfig, with a
// c10d process group for this rank's slice of every dimension, as torch's
// init_device_mesh does under Accelerate's build_device_mesh: ranks placed
// row-major over the mesh shape (torch.arange(world).reshape(shape)), and
// the flattened dimensions Accelerate adds ("dp", "dp_shard_cp", "dp_cp").
//
// Every rank builds its groups once, at construction, over the job's store
// and with the world group's backend; the construction is collective.
#include <map>
#include <string>
#include <vector>

#include "accel/dist/collectives.h"
#include "accel/parallel/mesh/parallelism_config.h"
#include "accel/util/export.h"

namespace accel {

class ProcessState;

class ACCEL_API DeviceMesh {
 public:
  /// Throws std::invalid_argument when the config is invalid or its
  /// total_size() is not the world size (naming every size).
  DeviceMesh(const ProcessState& state, ParallelismConfig config);

  const ParallelismConfig& config() const { return config_; }
  /// The mesh dimensions in order, then the flattened ones.
  std::vector<std::string> dim_names() const;

  /// Ranks along `dim` (a mesh or flattened dimension). Throws naming the
  /// dimension and the known ones when it is not in this mesh.
  int size(const std::string& dim) const;
  /// This rank's index along `dim` (its rank in group(dim)).
  int coordinate(const std::string& dim) const;
  /// Global ranks of this rank's slice along `dim`, in group-rank order.
  const std::vector<int>& slice(const std::string& dim) const;
  /// The process group of this rank's slice along `dim`.
  const ProcessGroupPtr& group(const std::string& dim) const;

 private:
  struct Dim {
    std::vector<int> ranks;
    int coordinate = 0;
    ProcessGroupPtr group;
  };
  const Dim& dim(const std::string& name) const;

  ParallelismConfig config_;
  std::vector<std::string> order_;
  std::map<std::string, Dim> dims_;
};

/// The global ranks of `rank`'s slice over the mesh dimensions at
/// `dims` (indices into `shape`): every rank that shares `rank`'s
/// coordinates on the other dimensions, ordered row-major over `dims`.
ACCEL_API std::vector<int> mesh_slice(const std::vector<int>& shape, const std::vector<int>& dims, int rank);

}  // namespace accel
