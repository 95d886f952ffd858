#pragma once
// PagedAdamState: the Adam/AdamW state of offloaded shards kept on an NVMe
// drive (offload_optimizer device nvme under full_shard / hybrid_shard,
// DeepSpeed ZeRO-3 with offload_optimizer nvme). Each unit's moments live
// in a file of its own under nvme_path (StateFile): the optimizer's state
// tensors are views of it, so the optimizer, CPU Adam and checkpoints see
// ordinary tensors, and host memory holds only what the kernel caches.
//
// The CPU update steps a unit at a time (ShardedOptimizerTensors), so the
// pages are hinted per unit: the next unit's file is read ahead while this
// one is stepped, and a stepped unit's pages start for the drive at once.
#include <filesystem>
#include <memory>
#include <unordered_map>
#include <vector>

#include <torch/optim/optimizer.h>

#include "accel/parallel/fsdp/sharded_unit.h"
#include "accel/parallel/fsdp/state_file.h"

namespace accel::fsdp {

class PagedAdamState {
 public:
  /// Whether the state of `optimizer` can be paged (Adam, AdamW or a subclass).
  static bool supports(const torch::optim::Optimizer& optimizer);

  /// A file per unit in `folder` (made if missing); std::runtime_error
  /// naming it when a file cannot be made there.
  PagedAdamState(const std::filesystem::path& folder, const std::vector<ShardedUnit*>& units);

  /// Before each step: the state of every piece of these units lives in its
  /// unit's file: made there (zeros) at a piece's first step, copied there
  /// when something else replaced it (load_state). Throws naming the file
  /// when the drive cannot hold it.
  void place(torch::optim::Optimizer& optimizer);

  void prefetch(const ShardedUnit* unit) const;
  void write_back(const ShardedUnit* unit) const;

  /// The files, per unit (for tests and messages).
  const StateFile& file(const ShardedUnit* unit) const { return *files_.at(unit); }

 private:
  struct Home {  // one piece's place in its unit's file, per state field
    StateFile* file = nullptr;
    std::vector<torch::Tensor> fields;  // exp_avg, exp_avg_sq, max_exp_avg_sq; allocated when first needed
    bool fresh = true;                  // still the zeros of the file: no state has used it yet
  };
  template <typename Options, typename State>
  void place_all(torch::optim::Optimizer& optimizer);

  std::unordered_map<const ShardedUnit*, std::shared_ptr<StateFile>> files_;
  std::unordered_map<const void*, Home> homes_;  // by piece
};

}  // namespace accel::fsdp
