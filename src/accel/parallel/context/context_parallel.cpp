#include "accel/parallel/context/context_parallel.h"

#include <algorithm>

#include <torch/torch.h>

#include "accel/parallel/mesh/device_mesh.h"
#include "accel/util/check.h"

namespace accel {
namespace {

thread_local const ContextParallel* active = nullptr;

// The active context parallelism when it spans more than one rank; a scope
// over one rank (cp_size 1) leaves the seams plain.
const ContextParallel* spanning() { return active && active->size() > 1 ? active : nullptr; }

ProcessGroupPtr cp_group_of(const DeviceMesh& mesh) {
  const auto names = mesh.dim_names();
  return std::find(names.begin(), names.end(), "cp") != names.end() ? mesh.group("cp") : ProcessGroupPtr{};
}

// Accelerate checks cp_comm_strategy only where cp_size > 1; so does this.
ContextParallelOptions options_of(const DeviceMesh& mesh, bool load_balance) {
  auto o = ContextParallelOptions().load_balance(load_balance);
  if (cp_group_of(mesh)) o.comm_strategy(mesh.config().cp_comm_strategy);
  return o;
}

}  // namespace

ContextParallel::ContextParallel(const DeviceMesh& mesh, bool load_balance)
    : ContextParallel(cp_group_of(mesh), options_of(mesh, load_balance)) {}

ContextParallel::ContextParallel(ProcessGroupPtr group, ContextParallelOptions options)
    : group_(std::move(group)),
      strategy_(context_parallel_strategy(options.comm_strategy())),
      load_balance_(options.load_balance()) {}

std::vector<torch::Tensor> ContextParallel::shard(const std::vector<torch::Tensor>& tensors, int64_t seq_dim) const {
  std::vector<torch::Tensor> parts;
  for (const auto& t : tensors)
    parts.push_back(size() == 1 ? t : shard_sequence(t, seq_dim, size(), rank(), load_balance_));
  return parts;
}

torch::Tensor ContextParallel::unshard(const torch::Tensor& part, int64_t seq_dim) const {
  return unshard_sequence(part, seq_dim, group_, load_balance_);
}

torch::Tensor ContextParallel::positions(int64_t local_length, const torch::TensorOptions& options) const {
  return context_parallel_positions(local_length * size(), size(), rank(), load_balance_ && size() > 1, options);
}

torch::Tensor ContextParallel::attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         std::optional<double> scale) const {
  return ring_attention(q, k, v, group_, strategy_, load_balance_, scale);
}

ContextParallelScope::ContextParallelScope(const ContextParallel& cp) : previous_(active) { active = &cp; }

ContextParallelScope::~ContextParallelScope() { active = previous_; }

const ContextParallel* active_context_parallel() { return active; }

torch::Tensor context_parallel_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         double dropout_p) {
  const ContextParallel* cp = spanning();
  if (!cp) return at::scaled_dot_product_attention(q, k, v, {}, dropout_p, /*is_causal=*/true);
  ACCEL_CHECK_ARG(dropout_p == 0.0, "context-parallel attention has no attention dropout, but dropout_p is ", dropout_p,
                  " (set the attention dropout to 0 or train in eval mode)");
  return cp->attention(q, k, v);
}

torch::Tensor context_parallel_positions(int64_t length, int64_t past, const torch::TensorOptions& options) {
  const ContextParallel* cp = spanning();
  if (!cp) return torch::arange(past, past + length, options.dtype(torch::kLong));
  ACCEL_CHECK_ARG(past == 0, "context parallel: ", past,
                  " cached positions; a KV cache is for generation, which does not run across cp ranks");
  return cp->positions(length, options);
}

int64_t context_parallel_sequence_length(int64_t length) {
  const ContextParallel* cp = spanning();
  return cp ? length * cp->size() : length;
}

std::vector<torch::Tensor> context_parallel_shard(const DeviceMesh& mesh, const std::vector<torch::Tensor>& tensors,
                                                  int64_t seq_dim, bool load_balance) {
  return ContextParallel(mesh, load_balance).shard(tensors, seq_dim);
}

}  // namespace accel
