#include "block_attention.h"

#include <limits>
#include <optional>

#include <torch/autograd.h>
#include <torch/torch.h>

namespace accel::context_detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr double kInf = std::numeric_limits<double>::infinity();

torch::Tensor scores(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& visible, double scale) {
  auto s = torch::matmul(q, k.transpose(-2, -1)) * scale;
  if (visible.defined()) s.masked_fill_(visible.logical_not(), -kInf);
  return s;
}

std::vector<int64_t> out_shape(const torch::Tensor& q, const torch::Tensor& v) {
  auto shape = q.sizes().vec();
  shape.back() = v.size(-1);
  return shape;
}

// The gradients follow FlashAttention's backward with the log-sum-exp as a
// second output: with P = exp(S - lse), out = P v, d lse / dS = P, so
//   dS = P * (dout v^T - rowsum(dout * out) + dlse).
// P is recomputed from q, k and lse rather than kept.
struct BlockAttention : torch::autograd::Function<BlockAttention> {
  // `visible` travels as an optional: autograd records every tensor input,
  // and an undefined one has no device to record.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const std::optional<torch::Tensor>& mask, double scale) {
    const torch::Tensor host_mask = mask.value_or(torch::Tensor());
    // A block no query sees (under a causal mask, a later rank's keys) costs
    // nothing; it still returns, so the K/V it came with stays in the graph.
    // The mask is built from positions on the host: deciding here costs no
    // device synchronisation; the device gets its copy below.
    const bool hidden = host_mask.defined() && !host_mask.any().item<bool>();
    const torch::Tensor visible = host_mask.defined() ? host_mask.to(q.device()) : host_mask;
    ctx->saved_data["hidden"] = hidden;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["visible"] = visible;
    if (hidden) {
      auto lse = torch::full(q.sizes().slice(0, q.dim() - 1), -kInf, q.options());
      auto out = torch::zeros(out_shape(q, v), q.options());
      ctx->save_for_backward({q, k, v});
      return {out, lse};
    }
    auto s = scores(q, k, visible, scale);
    auto max = std::get<0>(s.max(-1, /*keepdim=*/true));
    // Rows that see nothing have max -inf; shifting them by 0 keeps exp at 0.
    max.masked_fill_(max == -kInf, 0.0);
    auto p = (s - max).exp_();
    auto sum = p.sum(-1, /*keepdim=*/true);
    auto lse = (max + sum.log()).squeeze(-1);
    auto out = torch::matmul(p / sum.masked_fill(sum == 0, 1.0), v);
    ctx->save_for_backward({q, k, v, out, lse});
    return {out, lse};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    if (ctx->saved_data["hidden"].toBool())
      return {torch::zeros_like(saved[0]), torch::zeros_like(saved[1]), torch::zeros_like(saved[2]), torch::Tensor(),
              torch::Tensor()};
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    const auto visible = ctx->saved_data["visible"].toTensor();
    const double scale = ctx->saved_data["scale"].toDouble();
    auto dout = grads[0].defined() ? grads[0] : torch::zeros_like(out);
    // exp(-inf - +inf) = 0: rows that saw nothing get P = 0.
    auto p = (scores(q, k, visible, scale) - lse.masked_fill(lse == -kInf, kInf).unsqueeze(-1)).exp_();
    auto ds = torch::matmul(dout, v.transpose(-2, -1)) - (dout * out).sum(-1, /*keepdim=*/true);
    if (grads[1].defined()) ds = ds + grads[1].unsqueeze(-1);
    ds = p * ds;
    auto dq = torch::matmul(ds, k) * scale;
    auto dk = torch::matmul(ds.transpose(-2, -1), q) * scale;
    auto dv = torch::matmul(p.transpose(-2, -1), dout);
    return {dq, dk, dv, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> block_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                        const torch::Tensor& v, const torch::Tensor& visible,
                                                        double scale) {
  auto outs = BlockAttention::apply(
      q, k, v, visible.defined() ? std::optional<torch::Tensor>(visible) : std::optional<torch::Tensor>(), scale);
  return {outs[0], outs[1]};
}

}  // namespace accel::context_detail
