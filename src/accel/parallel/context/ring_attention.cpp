#include "accel/parallel/context/ring_attention.h"

#include <cmath>
#include <vector>

#include <torch/autograd.h>
#include <torch/torch.h>

#include "accel/parallel/context/sequence_shard.h"
#include "accel/util/check.h"
#include "block_attention.h"

namespace accel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Tag of the ring's sends; the cp group carries nothing else point to point.
constexpr int kRingTag = 0;

ProcessGroupPtr group_of(AutogradContext* ctx) {
  return ctx->saved_data.at("group").toCustomClass<c10d::ProcessGroup>();
}

// Sends `x` to rank + step and receives the tensor of rank - step (mod size).
torch::Tensor shift(const torch::Tensor& x, const ProcessGroupPtr& group, int step) {
  const int size = group->getSize(), rank = group->getRank();
  std::vector<torch::Tensor> out{x.contiguous()}, in{torch::empty_like(out[0])};
  auto sent = group->send(out, (rank + step + size) % size, kRingTag);
  group->recv(in, (rank - step + size) % size, kRingTag)->wait();
  sent->wait();
  return in[0];
}

// One hop of the ring: forward, the previous rank's block arrives; backward,
// its gradient goes back to that rank and the next rank's comes in.
struct RingPass : torch::autograd::Function<RingPass> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group) {
    ctx->saved_data["group"] = group;
    return shift(x, group, +1);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {shift(grads[0], group_of(ctx), -1), torch::Tensor()};
  }
};

// Every rank's block concatenated along the sequence (dim 2) in group-rank
// order; backward sums each block's gradient over the ranks and keeps this
// rank's (a reduce-scatter).
struct AllGatherSequence : torch::autograd::Function<AllGatherSequence> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const ProcessGroupPtr& group) {
    ctx->saved_data["group"] = group;
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < group->getSize(); ++r) out[0].push_back(torch::empty_like(x, at::MemoryFormat::Contiguous));
    std::vector<torch::Tensor> in{x.contiguous()};
    group->allgather(out, in)->wait();
    return torch::cat(out[0], 2);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto group = group_of(ctx);
    std::vector<std::vector<torch::Tensor>> in(1);
    for (auto& block : grads[0].chunk(group->getSize(), 2)) in[0].push_back(block.contiguous());
    std::vector<torch::Tensor> out{torch::empty_like(in[0][0])};
    group->reduce_scatter(out, in)->wait();
    return {out[0], torch::Tensor()};
  }
};

// visible[i][j]: query position i sees key position j (causal).
torch::Tensor causal_visibility(const torch::Tensor& query_positions, const torch::Tensor& key_positions) {
  return query_positions.unsqueeze(1) >= key_positions.unsqueeze(0);
}

// Undefined when every key is visible (no mask to apply).
torch::Tensor mask_or_none(torch::Tensor visible) { return visible.all().item<bool>() ? torch::Tensor() : visible; }

torch::Tensor all_gather_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const ProcessGroupPtr& group, bool load_balance, double scale) {
  const int size = group->getSize(), rank = group->getRank();
  const int64_t length = q.size(2) * size, dk = k.size(-1);
  // K and V travel as one tensor: one collective each way instead of two.
  auto kv = AllGatherSequence::apply(torch::cat({k, v}, -1), group);
  std::vector<torch::Tensor> key_positions;
  for (int r = 0; r < size; ++r) key_positions.push_back(context_parallel_positions(length, size, r, load_balance));
  auto visible =
      causal_visibility(context_parallel_positions(length, size, rank, load_balance), torch::cat(key_positions));
  return context_detail::block_attention(q, kv.narrow(-1, 0, dk), kv.narrow(-1, dk, v.size(-1)), visible, scale).first;
}

torch::Tensor ring_pass_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const ProcessGroupPtr& group, bool load_balance, double scale) {
  const int size = group->getSize(), rank = group->getRank();
  const int64_t length = q.size(2) * size, dk = k.size(-1);
  auto query_positions = context_parallel_positions(length, size, rank, load_balance);
  auto kv = torch::cat({k, v}, -1);
  std::vector<torch::Tensor> outs, lses;
  for (int step = 0; step < size; ++step) {
    // After `step` hops this rank holds the block of rank - step.
    if (step > 0) kv = RingPass::apply(kv, group);
    const int source = (rank - step + size) % size;
    auto visible = causal_visibility(query_positions, context_parallel_positions(length, size, source, load_balance));
    auto [out, lse] = context_detail::block_attention(q, kv.narrow(-1, 0, dk), kv.narrow(-1, dk, v.size(-1)),
                                                      mask_or_none(visible), scale);
    outs.push_back(out);
    lses.push_back(lse);
  }
  // Online softmax: each block's output is weighted by its share of the
  // whole row's exponentials, exp(lse_block - lse_all). Every query sees at
  // least its own position, so lse_all is finite; hidden blocks weigh 0.
  auto lse_all = torch::logsumexp(torch::stack(lses), 0);
  auto y = torch::zeros_like(outs[0]);
  for (size_t i = 0; i < outs.size(); ++i) y = y + (lses[i] - lse_all).exp().unsqueeze(-1) * outs[i];
  return y;
}

}  // namespace

ContextParallelStrategy context_parallel_strategy(const std::string& name) {
  if (name == "allgather") return ContextParallelStrategy::allgather;
  if (name == "alltoall") return ContextParallelStrategy::alltoall;
  ACCEL_CHECK_ARG(false, "context parallel: unknown cp_comm_strategy '", name, "', expected 'allgather' or 'alltoall'");
  return {};
}

std::string to_string(ContextParallelStrategy strategy) {
  return strategy == ContextParallelStrategy::allgather ? "allgather" : "alltoall";
}

torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const ProcessGroupPtr& group, ContextParallelStrategy strategy, bool load_balance,
                             std::optional<double> scale) {
  ACCEL_CHECK_ARG(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
                  "context-parallel attention takes q, k, v of shape [batch, heads, seq, dim], got ", q.sizes(), ", ",
                  k.sizes(), ", ", v.sizes());
  ACCEL_CHECK_ARG(q.sizes().slice(0, 3) == k.sizes().slice(0, 3) && k.sizes().slice(0, 3) == v.sizes().slice(0, 3) &&
                      q.size(3) == k.size(3),
                  "context-parallel attention is self-attention: q ", q.sizes(), ", k ", k.sizes(), " and v ",
                  v.sizes(), " must share batch, heads and sequence length, and q and k their head dim");
  if (!group || group->getSize() == 1)
    return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale);
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  // The split must hold the whole length (errors name it).
  context_parallel_positions(q.size(2) * group->getSize(), group->getSize(), group->getRank(), load_balance);
  if (strategy == ContextParallelStrategy::allgather) return all_gather_attention(q, k, v, group, load_balance, s);
  return ring_pass_attention(q, k, v, group, load_balance, s);
}

}  // namespace accel
