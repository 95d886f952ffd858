#pragma once
// Megatron-LM's column- and row-parallel Linear layers over a
// tensor-parallel process group.
//
// ColumnParallelLinear: the weight [out, in] split along out-features;
// the input is replicated, each rank computes its slice of the output
// (and its slice of the bias). Backward all-reduces the input's gradient.
// With gather_output the slices are gathered into the full output.
//
// RowParallelLinear: the weight split along in-features; the input arrives
// split along its last dimension (a column-parallel layer's output, say),
// each rank's product is a partial sum, all-reduced; the bias, whole on
// every rank, is added once after the reduce.
//
// The usual pair (an MLP, attention's projections) needs one all-reduce in
// forward and one in backward:
//
//   auto h = fc(x);           // ColumnParallelLinear: [.., 4C / tp] on each rank
//   auto y = proj(gelu(h));   // RowParallelLinear:    [.., C], equal on every rank
//
// Both are made from the full layer, of which each rank keeps its slice
// (shard.h): build the full layer identically on every rank (same seed),
// then shard it. parallelize_tensor (parallelize.h) does the same to the
// torch::nn::Linear modules of an existing model, by a plan.
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "accel/dist/collectives.h"
#include "accel/util/export.h"

namespace accel {

/// x [.., in] replicated -> [.., out / tp] (or [.., out] with gather_output).
/// `weight` [out / tp, in] and `bias` [out / tp] (or undefined) are this
/// rank's slices. `sequence_dim` >= 0 (sequence parallel): x arrives as
/// this rank's slice of that dimension and is all-gathered first
/// (regions.h's gather_from_sequence_parallel_region).
ACCEL_API torch::Tensor column_parallel_linear(const torch::Tensor& x, const torch::Tensor& weight,
                                               const torch::Tensor& bias, const ProcessGroupPtr& group,
                                               bool gather_output = false, int64_t sequence_dim = -1);

/// x [.., in / tp] split (or [.., in] replicated when !input_is_parallel:
/// this rank takes its slice) -> [.., out] replicated. `weight` [out, in / tp]
/// is this rank's slice, `bias` [out] the whole bias (or undefined).
/// `sequence_dim` >= 0 (sequence parallel): the output is reduce-scattered
/// along that dimension instead of all-reduced, and the bias added to this
/// rank's slice (its gradient is then partial: sum it over the group).
ACCEL_API torch::Tensor row_parallel_linear(const torch::Tensor& x, const torch::Tensor& weight,
                                            const torch::Tensor& bias, const ProcessGroupPtr& group,
                                            bool input_is_parallel = true, int64_t sequence_dim = -1);

class ACCEL_API ColumnParallelLinearImpl : public torch::nn::Module {
 public:
  /// This rank's slice of `full` (out-features must divide by the group size).
  ColumnParallelLinearImpl(const torch::nn::Linear& full, ProcessGroupPtr group, bool gather_output = false);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;

 private:
  ProcessGroupPtr group_;
  bool gather_output_;
};
TORCH_MODULE(ColumnParallelLinear);

class ACCEL_API RowParallelLinearImpl : public torch::nn::Module {
 public:
  /// This rank's slice of `full` (in-features must divide by the group size).
  RowParallelLinearImpl(const torch::nn::Linear& full, ProcessGroupPtr group, bool input_is_parallel = true);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;

 private:
  ProcessGroupPtr group_;
  bool input_is_parallel_;
};
TORCH_MODULE(RowParallelLinear);

}  // namespace accel
