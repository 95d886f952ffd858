#pragma once
// FullyShardedModel: a prepared model under full_shard (ZeRO-3 / FSDP
// FULL_SHARD). The wrap policy picks the units that shard (wrap_policy.h);
// each becomes a ShardedUnit (sharded_unit.h) and the rest of the model the
// root unit. Around them, as FSDP2 does with module hooks:
//   forward    a unit gathers its parameters just before its forward and
//              frees them after (unless reshard_after_forward is false);
//              the root gathers before the model's forward and keeps them
//              until its backward is done.
//   backward   hooks on a unit's outputs gather it again before its
//              backward. Its backward is over once backward has produced
//              the gradients of all its trainable parameters (hooks on
//              their gradient accumulators) and of its inputs that need one
//              (hooks on them: a frozen weight is still read until then);
//              then its gradients are reduce-scattered into the shards and
//              the unit is freed. A callback at the end of backward does the
//              same for units whose backward never ran or left some of
//              their parameters without a gradient.
//   no_sync    backward keeps the full gradients (accumulating them) and
//              reduces at the first backward outside no_sync.
// Every rank must run the same units forward and backward (as in FSDP, the
// collectives are issued in that order).
//
// The parameters' data may be read only inside the model's forward and
// backward; use full_state() (Accelerator::get_state_dict) to read them.
#include <c10/core/Event.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/parallel/fsdp/sharded_unit.h"
#include "accel/parallel/model_sharding.h"
#include "accel/parallel/sharding_options.h"
#include "accel/unit/unit.h"
#include "accel/util/export.h"

namespace torch::autograd {
struct Node;
}  // namespace torch::autograd

namespace accel::fsdp {

/// Bytes of parameter memory this rank holds (FullyShardedModel::memory()).
struct ACCEL_API ShardedMemory {
  int64_t shards = 0;          // parameter and gradient shards on the device, kept all along
  int64_t host = 0;            // offloaded shards in host memory (optimizer state not counted)
  int64_t files = 0;           // offloaded shards in files on the drive (offload_param nvme)
  int64_t unsharded = 0;       // gathered parameters alive now
  int64_t peak_unsharded = 0;  // the most gathered at once since construction
  int64_t full = 0;            // every unit's gathered size (what an unsharded model holds)
};

class ACCEL_API FullyShardedModel : public ModelSharding {
 public:
  /// Shards `model`'s parameters (each rank must pass the same values:
  /// the Accelerator broadcasts rank 0's first) across `group` (null: one
  /// process); `replicas`: under hybrid sharding, the ranks of the other
  /// groups that hold the same shards (ShardedUnit).
  /// `from_main`: parameters on the meta device get their values from the
  /// main process (ShardedUnit); every rank passes it or none does.
  /// `post_forward_ranks`: with reshard_after_forward an int k (1 < k <
  /// the group's size), the k ranks of `group` this rank keeps slices with
  /// (ShardedUnit::reshard_keeping_slice); std::invalid_argument when
  /// missing or of another size.
  FullyShardedModel(std::shared_ptr<torch::nn::Module> model, c10::intrusive_ptr<c10d::ProcessGroup> group,
                    ShardingOptions options, c10::intrusive_ptr<c10d::ProcessGroup> replicas = nullptr,
                    const FromMainProcess* from_main = nullptr,
                    c10::intrusive_ptr<c10d::ProcessGroup> post_forward_ranks = nullptr);
  ~FullyShardedModel() override;
  FullyShardedModel(const FullyShardedModel&) = delete;
  FullyShardedModel& operator=(const FullyShardedModel&) = delete;

  // ModelSharding
  void before_forward() override;
  void after_forward(std::vector<torch::Tensor>& outputs) override;
  bool* sync_flag() override { return &sync_; }
  safetensors::NamedTensors full_state() override;
  void write_full_parameters(const std::function<void()>& write) override;
  bool sharded_state_dict() const override { return options_.state_dict_type() == StateDictType::sharded; }
  void save_slices(const std::filesystem::path& file, int rank, int world_size) const override;
  void load_slices(const SliceSet& slices) override;

  /// The sharded units, then the root (last).
  const std::vector<std::unique_ptr<ShardedUnit>>& units() const { return units_; }
  /// The unit holding `param` and its index there; {nullptr, 0} when none does.
  std::pair<ShardedUnit*, size_t> find(const torch::Tensor& param) const;
  /// Frees every gathered unit (after an optimizer step their copies are stale).
  void reshard_all();
  /// Whether a unit's backward frees its gathered parameters (true, the
  /// default). False keeps them for the forwards and backwards that
  /// follow, as FSDP2's set_reshard_after_backward: a pipeline stage runs
  /// several micro-batches per step and is gathered once for all of them
  /// (pipeline/accelerated_step.h). reshard_all() and the optimizer step
  /// free them still.
  void set_reshard_after_backward(bool value) { reshard_after_backward_ = value; }
  void zero_grad();
  ShardedMemory memory() const;
  const torch::nn::Module& module() const { return *model_; }
  const ShardingOptions& options() const { return options_; }
  /// The ranks that split the parameters (a node's, under hybrid sharding).
  const c10::intrusive_ptr<c10d::ProcessGroup>& process_group() const { return group_; }

 private:
  class UnitForward;
  struct Progress {  // one unit's part in the current forward and backward
    bool forward_ran = false;
    bool backward_done = false;
    size_t grads_ready = 0;     // trainable parameters whose gradient backward produced
    size_t inputs_pending = 0;  // inputs needing a gradient that backward has not produced yet
  };

  void pre_forward(size_t k, const std::vector<torch::Tensor>& inputs);
  void post_forward(size_t k, std::vector<torch::Tensor>& outputs);
  void pre_backward(size_t k);
  void on_gradient(size_t k);
  void on_input_gradient(size_t k);
  void maybe_post_backward(size_t k);
  void post_backward(size_t k, bool prefetch = true);
  void end_backward();
  void queue_end_backward();
  void unshard(size_t k);
  // keep_slice: reshard_after_forward's int (post_forward_).
  void reshard(size_t k, bool keep_slice = false);
  void prefetch_forward(size_t k);
  void prefetch_backward(size_t k);
  void read_ahead_after(size_t k);
  // Gathers unit k ahead of its turn, unless that passes max_live_parameters.
  void prefetch(size_t k);

  std::shared_ptr<torch::nn::Module> model_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  ShardingOptions options_;
  c10::intrusive_ptr<c10d::ProcessGroup> post_forward_;  // null unless reshard_after_forward keeps slices
  std::vector<std::unique_ptr<ShardedUnit>> units_;
  std::vector<std::shared_ptr<UnitSlot>> slots_;  // of units_[k], except the root's
  std::vector<Progress> progress_;
  // Each parameter's unit and index there (find(), on every clip).
  std::unordered_map<const void*, std::pair<ShardedUnit*, size_t>> places_;
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> accumulator_hooks_;
  std::shared_ptr<char> alive_;  // output hooks outliving the model check it
  // Offloaded on CUDA: the copy streams, and an event per unit freed on the
  // host whose kernels the device may still be running. Before a gather
  // the host waits until at most one such unit is left, so that the
  // gathered memory stays within about two units however far the host
  // runs ahead of the device (FSDP's limit on all-gathers in flight).
  std::shared_ptr<const CopyStreams> streams_;
  std::deque<c10::Event> freed_;
  bool sync_ = true;
  bool reshard_after_backward_ = true;
  bool end_queued_ = false;
  bool in_backward_ = false;        // from the first backward hook to the end of backward
  std::vector<size_t> order_;       // units in the order this forward ran them
  std::vector<size_t> last_order_;  // and the previous forward's (forward_prefetch predicts from it)
  int64_t peak_unsharded_ = 0;
  std::vector<int64_t> numels_;  // of units_[k]'s parameters
};

}  // namespace accel::fsdp
