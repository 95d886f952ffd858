#pragma once
// Gradient clipping over a GradientSet (optim/optimizer_tensors.h): some
// gradients replicated on every rank, some sharded across ranks (ZeRO's
// slices). The norm is the norm of all of them together, as if one process
// held every gradient: each rank sums |g|^p over its shards, the sums are
// all-reduced (max for the inf-norm), and the replicated part is added
// once. Without shards this is accel::clip_gradients (optim/clip_grad.h):
// multi-tensor kernels, nothing read back to the host.
#include "accel/optim/optimizer_tensors.h"
#include "accel/util/export.h"

namespace accel {

/// The gradients standing for `parameters`: each one's as the one of
/// `holders` (master weights, a ZeRO engine) that stands for it holds it
/// (an fp32 master's, this rank's piece of a ZeRO slice), else its own,
/// replicated. Parameters without a gradient are left out.
ACCEL_API GradientSet gradients_of(const std::vector<torch::Tensor>& parameters,
                                   const std::vector<const OptimizerTensors*>& holders);

/// Scales every gradient of `grads` by min(1, max_norm / (norm + 1e-6))
/// in place; returns the norm before clipping as a 0-dim float tensor (0
/// when there is none). Every rank of grads.group must call it when
/// grads.sharded may be non-empty on any rank (it all-reduces).
ACCEL_API torch::Tensor clip_grad_norm_(GradientSet& grads, double max_norm, double norm_type = 2.0);

/// A part of a model's gradients that is itself split across `split_over`
/// (tensor-parallel slices: each tp rank holds its slice's gradient, or
/// its ZeRO/FSDP piece of that slice). Its |g|^p sums, replicated and
/// sharded alike, are summed over `split_over` too; null: not split.
struct ACCEL_API GradientPart {
  GradientSet grads;
  c10::intrusive_ptr<c10d::ProcessGroup> split_over;
};

/// clip_grad_norm_ over several parts with one norm, that of all of them
/// together: sum over the parts of (replicated sum + sharded sum over
/// grads.group), each then summed over split_over (max for the inf-norm).
/// The true norm of a TP x FSDP model: sliced squares summed over tp and
/// dp_shard, the replicated parameters' over dp_shard. Every rank of every
/// group named must call it with the same groups in the same order.
ACCEL_API torch::Tensor clip_grad_norm_(std::vector<GradientPart>& parts, double max_norm, double norm_type = 2.0);

/// Clamps every gradient element to [-clip_value, clip_value] in place.
ACCEL_API void clip_grad_value_(GradientSet& grads, double clip_value);

}  // namespace accel
