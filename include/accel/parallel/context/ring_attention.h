#pragma once
// Causal scaled-dot-product attention over a sequence split across the
// ranks of a context-parallel group (sequence_shard.h says how). Each rank
// holds the queries, keys and values of its own positions and gets the
// attention output of those positions, exactly as if one process had
// attended over the whole sequence; gradients reach every rank's q, k, v.
//
// Two strategies, Accelerate's cp_comm_strategy names:
//
//   "allgather"  every rank gathers all keys and values once (one
//                all-gather per layer; backward reduce-scatters their
//                gradients) and attends its queries over the whole
//                sequence, the causal mask placed by global positions.
//                Simple; holds the whole K/V on every rank.
//   "alltoall"   ring attention: K/V blocks travel around the ring, one hop
//                per step (send to the next rank, receive from the
//                previous; backward sends gradients the other way). Each
//                step attends the local queries over the block in hand,
//                keeping each query's log-sum-exp, and the partial results
//                are merged by those (the online-softmax merge). Blocks no
//                local query can see are skipped.
//                (torch rotates with all_to_all_single under this name;
//                here the hop is a send/receive pair, the same transfers.)
//
// Memory and overlap, as built: autograd keeps every block a rank received
// for its backward, so in training each rank ends up holding the whole
// sequence's K/V under either strategy (torch's ring re-rotates in backward
// instead); hops are not overlapped with the attention of the block in hand.
// Scores are plain matmuls in the inputs' dtype, [batch, heads, local_len,
// block_len] at a time, not a fused attention kernel.
//
// Shapes are SDPA's: q [batch, heads, local_len, head_dim], k likewise,
// v [batch, heads, local_len, value_dim]; local_len is the same on every
// rank. Every rank of the group calls it in the same order (collectives in
// forward and backward). No dropout, no extra mask: causal only.
#include <optional>
#include <string>

#include <torch/types.h>

#include "accel/dist/collectives.h"
#include "accel/util/export.h"

namespace accel {

enum class ContextParallelStrategy { allgather, alltoall };

/// "allgather" or "alltoall"; anything else throws std::invalid_argument
/// naming it and the known ones.
ACCEL_API ContextParallelStrategy context_parallel_strategy(const std::string& name);
ACCEL_API std::string to_string(ContextParallelStrategy strategy);

/// The causal attention output of this rank's positions [batch, heads,
/// local_len, value_dim]. `load_balance`: the split is sequence_shard.h's
/// load-balanced one (else contiguous). `scale` defaults to SDPA's
/// 1/sqrt(head_dim). With no group, or a group of one rank, plain causal
/// SDPA. Throws std::invalid_argument naming the shapes when they do not
/// fit, and the length when the split cannot hold it.
ACCEL_API torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                       const ProcessGroupPtr& group, ContextParallelStrategy strategy,
                                       bool load_balance, std::optional<double> scale = std::nullopt);

}  // namespace accel
