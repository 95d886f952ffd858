#include "accel/parallel/tensor/regions.h"

#include <torch/autograd.h>

#include "accel/util/check.h"

namespace accel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool alone(const ProcessGroupPtr& group) { return !group || group->getSize() == 1; }

// The group travels through the autograd context as an IValue: c10d
// registers ProcessGroup as a TorchScript class, so an IValue can hold it.
ProcessGroupPtr group_of(AutogradContext* ctx) {
  return ctx->saved_data.at("group").toCustomClass<c10d::ProcessGroup>();
}

torch::Tensor all_reduce_sum(const torch::Tensor& x, const ProcessGroupPtr& group) {
  std::vector<torch::Tensor> ts{x.contiguous().clone()};
  group->allreduce(ts)->wait();
  return ts[0];
}

// Every rank's last-dim slice, concatenated along the last dim. Uneven
// slices travel padded to the largest and are cut back after the gather.
torch::Tensor all_gather_last(const torch::Tensor& x, const ProcessGroupPtr& group, std::vector<int64_t> sizes) {
  const int world = group->getSize();
  const int64_t own = x.size(-1);
  if (sizes.empty()) sizes.assign(world, own);
  ACCEL_CHECK_ARG(static_cast<int>(sizes.size()) == world, "tensor-parallel gather: ", sizes.size(),
                  " sizes for a group of ", world, " ranks");
  ACCEL_CHECK_ARG(sizes[group->getRank()] == own, "tensor-parallel gather: rank ", group->getRank(),
                  " holds a last dimension of ", own, " where the sizes say ", sizes[group->getRank()]);
  int64_t largest = 0;
  for (auto s : sizes) largest = std::max(largest, s);
  auto padded = own == largest ? x.contiguous() : torch::constant_pad_nd(x, {0, largest - own}).contiguous();
  std::vector<std::vector<torch::Tensor>> out(1);
  for (int r = 0; r < world; ++r) out[0].push_back(torch::empty_like(padded));
  std::vector<torch::Tensor> in{padded};
  group->allgather(out, in)->wait();
  for (int r = 0; r < world; ++r) out[0][r] = out[0][r].narrow(-1, 0, sizes[r]);
  return torch::cat(out[0], -1);
}

// This rank's slice of the last dim, given every rank's size.
torch::Tensor own_slice(const torch::Tensor& x, const ProcessGroupPtr& group, const std::vector<int64_t>& sizes) {
  const int rank = group->getRank();
  if (sizes.empty()) {
    const int64_t n = x.size(-1) / group->getSize();
    return x.narrow(-1, rank * n, n).contiguous();
  }
  int64_t start = 0;
  for (int r = 0; r < rank; ++r) start += sizes[r];
  return x.narrow(-1, start, sizes[rank]).contiguous();
}

struct CopyTo : torch::autograd::Function<CopyTo> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group) {
    ctx->saved_data["group"] = group;
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_reduce_sum(grads[0], group_of(ctx)), torch::Tensor()};
  }
};

struct ReduceFrom : torch::autograd::Function<ReduceFrom> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group) {
    return all_reduce_sum(x, group);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) { return {grads[0], torch::Tensor()}; }
};

struct GatherFrom : torch::autograd::Function<GatherFrom> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group,
                               std::vector<int64_t> sizes) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["sizes"] = sizes;
    return all_gather_last(x, group, sizes);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {own_slice(grads[0], group_of(ctx), ctx->saved_data.at("sizes").toIntVector()), torch::Tensor(),
            torch::Tensor()};
  }
};

struct ScatterTo : torch::autograd::Function<ScatterTo> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group) {
    ctx->saved_data["group"] = group;
    return own_slice(x, group, {});
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_gather_last(grads[0], group_of(ctx), {}), torch::Tensor()};
  }
};

// The sequence crossings work on `dim` moved to the front, so that each
// rank's slice is one contiguous block for the flat collectives.
void check_sequence(const torch::Tensor& x, const ProcessGroupPtr& group, int64_t dim, const char* what) {
  ACCEL_CHECK_ARG(dim >= 0 && dim < x.dim(), what, ": no sequence dimension ", dim, " in a tensor of shape ",
                  x.sizes());
  ACCEL_CHECK_ARG(x.size(dim) % group->getSize() == 0, what, ": the sequence dimension ", dim, " has ", x.size(dim),
                  " positions, not a multiple of the tensor-parallel size ", group->getSize());
}

torch::Tensor own_sequence_slice(const torch::Tensor& x, const ProcessGroupPtr& group, int64_t dim) {
  const int64_t n = x.size(dim) / group->getSize();
  return x.narrow(dim, group->getRank() * n, n).contiguous();
}

torch::Tensor all_gather_sequence(const torch::Tensor& x, const ProcessGroupPtr& group, int64_t dim) {
  auto in = x.movedim(dim, 0).contiguous();
  auto sizes = in.sizes().vec();
  sizes[0] *= group->getSize();
  auto out = torch::empty(sizes, in.options());
  group->_allgather_base(out, in)->wait();
  return out.movedim(0, dim).contiguous();
}

torch::Tensor reduce_scatter_sequence(const torch::Tensor& x, const ProcessGroupPtr& group, int64_t dim) {
  auto in = x.movedim(dim, 0).contiguous();
  auto sizes = in.sizes().vec();
  sizes[0] /= group->getSize();
  auto out = torch::empty(sizes, in.options());
  group->_reduce_scatter_base(out, in)->wait();
  return out.movedim(0, dim).contiguous();
}

struct ScatterToSequence : torch::autograd::Function<ScatterToSequence> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group,
                               int64_t dim) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["dim"] = dim;
    return own_sequence_slice(x, group, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_gather_sequence(grads[0], group_of(ctx), ctx->saved_data.at("dim").toInt()), torch::Tensor(),
            torch::Tensor()};
  }
};

struct GatherFromSequence : torch::autograd::Function<GatherFromSequence> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group, int64_t dim,
                               bool grad_is_partial) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["partial"] = grad_is_partial;
    return all_gather_sequence(x, group, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto group = group_of(ctx);
    const int64_t dim = ctx->saved_data.at("dim").toInt();
    auto grad = ctx->saved_data.at("partial").toBool() ? reduce_scatter_sequence(grads[0], group, dim)
                                                       : own_sequence_slice(grads[0], group, dim);
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

struct ReduceScatterToSequence : torch::autograd::Function<ReduceScatterToSequence> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group,
                               int64_t dim) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["dim"] = dim;
    return reduce_scatter_sequence(x, group, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_gather_sequence(grads[0], group_of(ctx), ctx->saved_data.at("dim").toInt()), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor scatter_to_sequence_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group, int64_t dim) {
  if (alone(group)) return x;
  check_sequence(x, group, dim, "sequence-parallel scatter");
  return ScatterToSequence::apply(x, group, dim);
}

torch::Tensor gather_from_sequence_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group, int64_t dim,
                                                   bool grad_is_partial) {
  if (alone(group)) return x;
  ACCEL_CHECK_ARG(dim >= 0 && dim < x.dim(), "sequence-parallel gather: no sequence dimension ", dim,
                  " in a tensor of shape ", x.sizes());
  return GatherFromSequence::apply(x, group, dim, grad_is_partial);
}

torch::Tensor reduce_scatter_to_sequence_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group,
                                                         int64_t dim) {
  if (alone(group)) return x;
  check_sequence(x, group, dim, "sequence-parallel reduce-scatter");
  return ReduceScatterToSequence::apply(x, group, dim);
}

torch::Tensor copy_to_tensor_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group) {
  if (alone(group)) return x;
  return CopyTo::apply(x, group);
}

torch::Tensor reduce_from_tensor_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group) {
  if (alone(group)) return x;
  return ReduceFrom::apply(x, group);
}

torch::Tensor gather_from_tensor_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group,
                                                 const std::vector<int64_t>& sizes) {
  if (alone(group)) return x;
  return GatherFrom::apply(x, group, sizes);
}

torch::Tensor scatter_to_tensor_parallel_region(const torch::Tensor& x, const ProcessGroupPtr& group) {
  if (alone(group)) return x;
  ACCEL_CHECK_ARG(x.dim() >= 1 && x.size(-1) % group->getSize() == 0, "tensor-parallel scatter: the last dimension (",
                  x.dim() >= 1 ? x.size(-1) : 0, ") must divide by the tensor-parallel size (", group->getSize(), ")");
  return ScatterTo::apply(x, group);
}

}  // namespace accel
