#pragma once
// ShardedUnit: one unit's parameters under full_shard (ZeRO-3 / FSDP).
//
// The unit's parameters are laid end to end in a flat buffer per kind
// (trainable, then frozen), padded to a multiple of the world size N, the
// FlatLayout ZeRO uses (parallel/zero/flat_layout.h); rank r owns the r-th
// of N equal slices. Each rank keeps:
//   shard        its slice, in the parameters' dtype (fp32 for fp16/bf16
//                parameters: the optimizer's master copy);
//   grad shard   the averaged gradient of that slice (trainable only).
// The model's parameters stay the same tensors with the same shapes
// (named_parameters() is unchanged), as views of a flat buffer whose
// storage is given memory only while the unit is unsharded:
//   unshard()    allocates it and all-gathers every rank's shard into it;
//   reshard()    frees it again (the views keep their shapes; their data
//                must not be read until the next unshard()).
// Freeing the storage, not replacing it, is what lets autograd's saved
// tensors (views of the parameters) see the data gathered again before
// backward. The optimizer steps `pieces`: per parameter, the part of it
// inside this rank's slice (1-D, possibly empty), views of the shard, so
// param groups and per-parameter options the user set stay as they were.
//
// Offload (ShardPlacement): the shard and gradient shard live in host
// memory, and so does the optimizer state the optimizer builds over the
// pieces (DeepSpeed ZeRO-3 with offload_optimizer, FSDP's CPU offload).
// What the gathers read is then a copy of the shard in the parameters'
// dtype (bf16 for a bf16 model: half the bytes of the fp32 masters), kept
// on the device (offload_optimizer) or in host memory too (offload_param:
// copied over at each gather). The optimizer step refreshes that copy
// (CPU Adam writes it in the same pass; shards_updated()). With
// offload_param device nvme both the shard and that copy are instead
// tensors mapped from a file of the unit's own (ShardPlacement::nvme_folder):
// every reader (the gathers, CPU Adam stepping them in place, checkpoints)
// sees ordinary CPU tensors, and the kernel pages them between the drive
// and its cache; the unit starts the reads before each gather (read_ahead())
// and the write-back after each update. The gradient shard stays in host
// memory: it is written by every backward and read once per step.
//
// Compute dtype (MixedPrecisionPolicy's param_dtype): the gathered buffer,
// and so the parameters viewing it, may be in another dtype than the
// parameters had (bf16 for an fp32 model: half the bytes gathered); the
// shards keep the parameters' own dtype and values, and the full-precision
// reads and writes (full_precision_parameters(), unshard_for_write()) go
// through them.
#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/types.h>

#include "accel/parallel/sharding_options.h"
#include "accel/parallel/zero/flat_layout.h"
#include "accel/util/export.h"

namespace accel::fsdp {

struct CopyStreams;      // copy_streams.h
class FreedMemoryGuard;  // freed_memory_guard.h
class ScratchFolder;     // state_file.h
class StateFile;         // state_file.h

/// Where a unit's shards live (ShardingOptions' offload_optimizer and offload_param).
struct ACCEL_API ShardPlacement {
  /// Shards, gradient shards and the optimizer's state over them in host memory.
  bool host_masters = false;
  /// The copy the gathers read in host memory too (implies host_masters).
  bool host_params = false;
  /// Page-locked host memory (ignored without CUDA; never the files below).
  bool pin_memory = true;
  /// Set: the shard and the copy the gathers read live in a file made in
  /// this folder, mapped (offload_param nvme; implies host_params).
  std::shared_ptr<const ScratchFolder> nvme_folder;
};

/// Where a unit whose parameters are on the meta device gets its values: a
/// model built without memory on every process but the main one
/// (init_empty_weights; FSDP's sync_module_states with
/// cpu_ram_efficient_loading). The unit's gathered buffer is made on
/// `device` and broadcast from rank 0 of `group` (every rank of the job),
/// and each rank keeps its shard: a rank other than the main one holds one
/// unit of the whole model at a time, never more.
struct ACCEL_API FromMainProcess {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  c10::Device device = c10::kCPU;
};

class ACCEL_API ShardedUnit {
 public:
  /// `params`: (name in the model, parameter), each once; all of one dtype
  /// and device (std::invalid_argument naming the first that is not).
  /// `group`: the ranks that split the parameters (null: one process);
  /// `replicas`: under hybrid sharding, the ranks holding the same shard
  /// in the other groups (null: none). `policy`: the compute and reduction
  /// dtypes (cast_forward_inputs is the caller's). Leaves the unit resharded.
  ShardedUnit(std::string path, const std::vector<std::pair<std::string, torch::Tensor>>& params,
              c10::intrusive_ptr<c10d::ProcessGroup> group, c10::intrusive_ptr<c10d::ProcessGroup> replicas = nullptr,
              ShardPlacement placement = {}, const FromMainProcess* from_main = nullptr,
              const MixedPrecisionPolicy& policy = {});
  ~ShardedUnit();
  ShardedUnit(const ShardedUnit&) = delete;

  /// The elements of the shards one rank of `world_size` keeps for these
  /// parameters, padding included (what the constructor allocates per rank).
  static int64_t shard_numel(const std::vector<std::pair<std::string, torch::Tensor>>& params, int world_size);
  ShardedUnit& operator=(const ShardedUnit&) = delete;

  /// The unit's module path ("" for the root).
  const std::string& path() const { return path_; }
  /// The model's parameters of this unit, and their names.
  const std::vector<torch::Tensor>& parameters() const { return params_; }
  const std::vector<std::string>& names() const { return names_; }
  size_t num_trainable() const { return num_trainable_; }
  /// The parameters' own dtype (what the state dict holds).
  torch::ScalarType dtype() const { return dtype_; }
  /// The dtype they are gathered and computed in (param_dtype, else dtype()).
  torch::ScalarType compute_dtype() const;
  bool casts() const { return compute_dtype() != dtype_; }

  /// Every parameter's whole value in dtype(), on the unit's device, all-
  /// gathered from the shards (collective); the unit's state is unchanged.
  std::vector<torch::Tensor> full_precision_parameters();

  void unshard();
  /// Frees the gathered parameters, and a slice kept by the call below.
  void reshard();
  /// Frees the gathered parameters but keeps this rank's 1/k of them, k
  /// the size of `ranks` (reshard_after_forward as an int; its rank r
  /// keeps the r-th of k equal parts): the next unshard() all-gathers
  /// those slices inside `ranks` only. Just reshard() after
  /// unshard_for_write().
  void reshard_keeping_slice(c10::intrusive_ptr<c10d::ProcessGroup> ranks);
  /// Bytes of the slice kept now (0 when none).
  int64_t kept_slice_bytes() const;
  /// How many of gathers() gathered from kept slices.
  int64_t slice_gathers() const { return slice_gathers_; }
  /// unshard(), except that a unit that casts() gathers its shards in
  /// dtype() and the parameters view those until reshard(), so that a
  /// write (a load) reaches the shards at full precision. No forward or
  /// backward may run in between.
  void unshard_for_write();
  /// While unsharded: the shard takes this rank's slice of the gathered
  /// parameters (after something wrote them, such as a load).
  void keep_written_shard();
  bool unsharded() const { return unsharded_; }
  /// How many times unshard() gathered since construction.
  int64_t gathers() const { return gathers_; }

  /// The trainable parameters' full gradients (those backward produced;
  /// missing ones count as zero), summed over all ranks (reduce-scattered
  /// in the group, then all-reduced across the replicas) and divided by
  /// their number,
  /// added to this rank's gradient shard (or written, after zero_grad());
  /// the full gradients are freed.
  void reduce_gradients();
  /// The gradient shard stands for zero; full gradients still held (no_sync) are dropped.
  void zero_grad();
  /// Before the optimizer step: the pieces' .grad are the gradient shard's views.
  void gradients_to_pieces();

  /// Offloaded: the squared 2-norm of this rank's gradient shard, summed on
  /// the device as it was reduced, before the copy to host memory (so that
  /// clipping need not read the host shard); undefined once the shard was
  /// accumulated into or its pieces' gradients were changed in place (a
  /// loss scaler's unscale). Includes the deferred scale below.
  torch::Tensor grad_sq_norm() const;
  /// Offloaded: multiply the gradient shard by `factor`, but leave it to
  /// the optimizer step (CPU Adam folds it into its pass); grad_scale() is
  /// the product so far, apply_grad_scale() does it in place instead.
  void scale_grad_later(float factor) { grad_scale_ *= factor; }
  float grad_scale() const { return grad_scale_; }
  void apply_grad_scale();

  /// What the optimizer steps for parameters()[i].
  const torch::Tensor& piece(size_t i) const { return pieces_.at(i); }
  /// Where piece(i) starts among parameters()[i]'s elements, flattened.
  int64_t piece_begin(size_t i) const { return piece_begin_.at(i); }
  /// Writes `values` (numel of piece(i), any dtype) into piece(i), the
  /// unit resharded (a load); pieces_written() once every piece is written.
  void write_piece(size_t i, const torch::Tensor& values);
  void pieces_written();
  /// The gradient of piece(i) (valid after gradients_to_pieces()).
  torch::Tensor piece_grad(size_t i) const;
  /// Offloaded with a parameter dtype other than the shard's: where the
  /// new value of piece(i) goes in that dtype (host memory), for an update
  /// that writes it in the same pass. Undefined otherwise.
  torch::Tensor piece_copy(size_t i) const;
  /// After the optimizer wrote the shard: the copy the gathers read is
  /// refreshed (from the host copy, or from the shard unless the update
  /// wrote the piece copies, `copies_written`). Deferred while an update
  /// is pending (below).
  void shards_updated(bool copies_written);
  /// Offloaded: the optimizer's update of this unit's shard runs in the
  /// background until `done`; the shard, its copies and its gradient shard
  /// are not touched before then. Whatever reads or writes them first
  /// (the next gather, a save, a load, the next reduction) waits for it
  /// and then refreshes the copies (shards_updated(copies_written)).
  void set_pending_update(std::shared_future<void> done, bool copies_written);
  /// Waits for a pending update (rethrowing its error) and applies it.
  void wait_for_update();

  const ShardPlacement& placement() const { return placement_; }
  /// Offloaded on CUDA: the host-to-device copies of the gathers and the
  /// device-to-host copies of the gradient shards run on these side
  /// streams, the compute stream waiting only for what it reads. Set while
  /// the unit is resharded.
  void set_copy_streams(std::shared_ptr<const CopyStreams> streams) { streams_ = std::move(streams); }
  /// Bytes of shards and gradient shards this rank keeps on the device.
  int64_t shard_bytes() const;
  /// Bytes this rank keeps in host memory (offload; the optimizer's state not counted).
  int64_t host_bytes() const;
  /// Bytes of shards this rank keeps in its file (offload_param nvme).
  int64_t file_bytes() const;
  /// offload_param nvme: the file holding the shards (empty when none).
  std::filesystem::path file_path() const;
  /// offload_param nvme: starts reading the file's pages that are not in
  /// memory (a gather's prefetch), or writing its dirty ones back (after
  /// an update). Hints that return at once; no-ops without a file.
  void read_ahead() const;
  void write_back() const;
  /// Bytes the gathered parameters take while unsharded.
  int64_t unsharded_bytes() const;

 private:
  struct Kind {
    zero::FlatGroup layout;
    std::vector<size_t> members;                // indices into params_
    torch::Tensor full;                         // the flat buffer the parameters view
    torch::Tensor written;                      // unshard_for_write's buffer in dtype_, while they view it
    std::vector<torch::Tensor> gathered_views;  // meanwhile, their views of `full`
    std::shared_ptr<FreedMemoryGuard> freed;    // CPU: where `full` points while freed
    torch::Tensor shard;                        // this rank's slice (the optimizer's)
    torch::Tensor grad_shard;                   // trainable only
    // Offloaded only: the shard in full's dtype in host memory (the shard
    // itself when the dtypes agree), and on the device unless host_params.
    torch::Tensor host_copy;
    torch::Tensor device_copy;
    torch::Tensor kept;  // reshard_keeping_slice's part of `full`
  };
  torch::Tensor gather_input(const Kind& kind) const;
  torch::Tensor gather_full_precision(const Kind& kind);
  void set_parameter_data(Kind& kind, const std::vector<torch::Tensor>& data);
  // The gathered buffers belong to the copy stream (offload_param on CUDA).
  bool gathers_on_copy_stream() const { return streams_ && placement_.host_params; }
  void copy_to_grad_shard(Kind& kind, const torch::Tensor& reduced);
  void refresh_copies(bool copies_written, bool frozen_too);

  std::string path_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> pieces_;
  std::vector<std::pair<size_t, int64_t>> piece_place_;  // params_[i] -> (kind, offset of its piece in the shard)
  std::vector<int64_t> piece_begin_;                     // params_[i] -> first element of its piece
  std::vector<Kind> kinds_;
  size_t num_trainable_ = 0;
  torch::ScalarType dtype_ = torch::kFloat;
  std::optional<torch::ScalarType> param_dtype_, reduce_dtype_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  c10::intrusive_ptr<c10d::ProcessGroup> replicas_;
  ShardPlacement placement_;
  std::shared_ptr<StateFile> file_;  // offload_param nvme: where the shards and host copies are
  std::shared_ptr<const CopyStreams> streams_;
  bool unsharded_ = true;
  int64_t gathers_ = 0;
  int64_t slice_gathers_ = 0;
  c10::intrusive_ptr<c10d::ProcessGroup> kept_group_;  // while slices are kept
  torch::Tensor reduced_sq_;                           // grad_sq_norm() before the scale
  std::vector<int64_t> piece_grad_versions_;           // of the pieces' gradients when made
  std::shared_future<void> pending_;                   // set_pending_update
  bool pending_copies_written_ = false;
  float grad_scale_ = 1.f;
  bool grad_zero_ = true;

  int world_size() const { return group_ ? group_->getSize() : 1; }
  int rank() const { return group_ ? group_->getRank() : 0; }
};

}  // namespace accel::fsdp
