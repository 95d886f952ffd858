#pragma once
// Context parallelism: each rank of the "cp" group holds a part of every
// sequence (sequence_shard.h) and attention runs across the parts
// (ring_attention.h); everything else in a transformer is per token and
// runs on the part as it is. Parameters are replicated over cp, and each
// rank's gradient is that of its own tokens' mean loss, so averaging the
// gradients over the cp ranks (with data parallel: over "dp_cp") gives the
// whole sequence's.
//
// Accelerate does this with torch's context_parallel context manager, which
// shards the buffers it is given and swaps SDPA for ring attention while it
// is open. LibTorch has no such dispatch to swap, so the model calls its
// attention and its position ids through the seams below, and a
// ContextParallelScope makes them context-parallel on this thread:
//
//   accel::ContextParallel cp(mesh);                              // the mesh's "cp" group and strategy
//   auto parts = cp.shard({tokens, targets}, /*seq_dim=*/1);     // this rank's positions
//   accel::ContextParallelScope scope(cp);
//   auto loss = model(parts[0], parts[1]);                        // attention across the ranks
//   loss.backward();                                              // also collective (any thread, any scope)
//
// With no scope open, or one over a single rank, the seams are plain
// causal SDPA and positions 0..len-1, so one model serves cp=1 and cp>1.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "accel/dist/collectives.h"
#include "accel/parallel/context/ring_attention.h"
#include "accel/parallel/context/sequence_shard.h"
#include "accel/util/export.h"

namespace accel {

class DeviceMesh;

struct ACCEL_API ContextParallelOptions {
  /// "allgather" or "alltoall" (Accelerate's cp_comm_strategy).
  ContextParallelOptions& comm_strategy(std::string name) {
    comm_strategy_ = std::move(name);
    return *this;
  }
  /// The load-balanced split for causal attention (torch's default), else contiguous.
  ContextParallelOptions& load_balance(bool on) {
    load_balance_ = on;
    return *this;
  }
  const std::string& comm_strategy() const { return comm_strategy_; }
  bool load_balance() const { return load_balance_; }

 private:
  std::string comm_strategy_ = "allgather";
  bool load_balance_ = true;
};

class ACCEL_API ContextParallel {
 public:
  /// Over `group` (none, or one rank: context parallel is off). Throws
  /// std::invalid_argument naming an unknown strategy.
  explicit ContextParallel(ProcessGroupPtr group, ContextParallelOptions options = {});
  /// Over the mesh's "cp" dimension with its config's cp_comm_strategy
  /// (off when the mesh has none).
  explicit ContextParallel(const DeviceMesh& mesh, bool load_balance = true);

  int size() const { return group_ ? group_->getSize() : 1; }
  int rank() const { return group_ ? group_->getRank() : 0; }
  const ProcessGroupPtr& group() const { return group_; }
  ContextParallelStrategy strategy() const { return strategy_; }
  bool load_balance() const { return load_balance_; }

  /// This rank's part of each tensor along `seq_dim` (inputs, targets,
  /// position ids: all cut alike); the tensors themselves when off.
  std::vector<torch::Tensor> shard(const std::vector<torch::Tensor>& tensors, int64_t seq_dim) const;
  /// The whole sequence back from every rank's part (a collective).
  torch::Tensor unshard(const torch::Tensor& part, int64_t seq_dim) const;
  /// Global positions of this rank's `local_length` tokens.
  torch::Tensor positions(int64_t local_length, const torch::TensorOptions& options = torch::kLong) const;
  /// Causal attention across the ranks (ring_attention.h).
  torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          std::optional<double> scale = std::nullopt) const;

 private:
  ProcessGroupPtr group_;
  ContextParallelStrategy strategy_;
  bool load_balance_;
};

/// Makes `cp` the active context parallelism of this thread until it ends
/// (scopes nest; the innermost wins). `cp` must outlive the scope.
class ACCEL_API ContextParallelScope {
 public:
  explicit ContextParallelScope(const ContextParallel& cp);
  ~ContextParallelScope();
  ContextParallelScope(const ContextParallelScope&) = delete;
  ContextParallelScope& operator=(const ContextParallelScope&) = delete;

 private:
  const ContextParallel* previous_;
};

/// The active context parallelism of this thread, or null.
ACCEL_API const ContextParallel* active_context_parallel();

// The seams a model calls.

/// Causal self-attention: ring_attention over the active group, else
/// torch's causal SDPA with `dropout_p`. Context-parallel attention has no
/// dropout: a nonzero `dropout_p` in a scope throws naming it.
ACCEL_API torch::Tensor context_parallel_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                   const torch::Tensor& v, double dropout_p = 0.0);
/// Position ids of `length` new tokens after `past` cached ones: their
/// global positions in a scope (where `past` must be 0: no KV cache across
/// ranks), else past..past+length-1.
ACCEL_API torch::Tensor context_parallel_positions(int64_t length, int64_t past, const torch::TensorOptions& options);
/// The whole sequence's length of a part of `length` tokens (length * cp in a scope).
ACCEL_API int64_t context_parallel_sequence_length(int64_t length);

/// Accelerate's maybe_context_parallel buffer sharding: this rank's part of
/// each tensor along `seq_dim` over the mesh's "cp" dimension, the tensors
/// themselves when the mesh has none.
ACCEL_API std::vector<torch::Tensor> context_parallel_shard(const DeviceMesh& mesh,
                                                            const std::vector<torch::Tensor>& tensors, int64_t seq_dim,
                                                            bool load_balance = true);

}  // namespace accel
