#include "accel/parallel/tensor/parallel_linear.h"

#include <torch/nn/functional/linear.h>

#include "accel/ops/linear.h"
#include "accel/parallel/tensor/regions.h"
#include "accel/parallel/tensor/shard.h"

namespace accel {
namespace {

int rank_of(const ProcessGroupPtr& g) { return g ? g->getRank() : 0; }
int size_of(const ProcessGroupPtr& g) { return g ? g->getSize() : 1; }

}  // namespace

torch::Tensor column_parallel_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                     const ProcessGroupPtr& group, bool gather_output, int64_t sequence_dim) {
  // The gathered sequence's backward sums the partial gradients, as copy_to's does.
  auto input = sequence_dim >= 0 ? gather_from_sequence_parallel_region(x, group, sequence_dim)
                                 : copy_to_tensor_parallel_region(x, group);
  // The bias in the GEMM, its gradient in the weight-gradient GEMM (see
  // parallel_linear, parallelize.cpp).
  auto y = accel::linear(input, weight, bias);
  return gather_output ? gather_from_tensor_parallel_region(y, group) : y;
}

torch::Tensor row_parallel_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                  const ProcessGroupPtr& group, bool input_is_parallel, int64_t sequence_dim) {
  auto local = input_is_parallel ? x : scatter_to_tensor_parallel_region(x, group);
  // The bias after the reduce: added before it, it would count tp times.
  auto partial = torch::nn::functional::linear(local, weight);
  auto y = sequence_dim >= 0 ? reduce_scatter_to_sequence_parallel_region(partial, group, sequence_dim)
                             : reduce_from_tensor_parallel_region(partial, group);
  return bias.defined() ? y + bias : y;
}

ColumnParallelLinearImpl::ColumnParallelLinearImpl(const torch::nn::Linear& full, ProcessGroupPtr group,
                                                   bool gather_output)
    : group_(std::move(group)), gather_output_(gather_output) {
  torch::NoGradGuard no_grad;
  weight = register_parameter(
      "weight", shard_dim(full->weight, 0, rank_of(group_), size_of(group_), 1, "ColumnParallelLinear weight"));
  if (full->bias.defined())
    bias = register_parameter(
        "bias", shard_dim(full->bias, 0, rank_of(group_), size_of(group_), 1, "ColumnParallelLinear bias"));
}

torch::Tensor ColumnParallelLinearImpl::forward(const torch::Tensor& x) {
  return column_parallel_linear(x, weight, bias, group_, gather_output_);
}

RowParallelLinearImpl::RowParallelLinearImpl(const torch::nn::Linear& full, ProcessGroupPtr group,
                                             bool input_is_parallel)
    : group_(std::move(group)), input_is_parallel_(input_is_parallel) {
  torch::NoGradGuard no_grad;
  weight = register_parameter(
      "weight", shard_dim(full->weight, 1, rank_of(group_), size_of(group_), 1, "RowParallelLinear weight"));
  if (full->bias.defined()) bias = register_parameter("bias", full->bias.detach().clone());
}

torch::Tensor RowParallelLinearImpl::forward(const torch::Tensor& x) {
  return row_parallel_linear(x, weight, bias, group_, input_is_parallel_);
}

}  // namespace accel
