#include "accel/ops/linear_cross_entropy.h"

#include <limits>
#include <stdexcept>
#include <string>

#include <ATen/autocast_mode.h>
#include <ATen/ops/_log_softmax.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/mm.h>
#include <torch/autograd.h>

#include "accel/ops/autocast_gemm.h"
#include "accel/ops/cuda_kernels.h"
#include "accel/ops/fused_kernels.h"
#include "accel/util/check.h"
#include "accel/util/format.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/softmax_cross_entropy.h"
#endif

namespace accel {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

void check(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& target,
           const LinearCrossEntropyOptions& o) {
  constexpr const char* who = "linear_cross_entropy: ";
  ACCEL_CHECK_ARG(hidden.defined() && weight.defined() && target.defined(), who,
                  "hidden, weight and target must be defined");
  ACCEL_CHECK_ARG(hidden.dim() >= 1, who, "hidden is a scalar, expected [..., C]");
  ACCEL_CHECK_ARG(weight.dim() == 2 && weight.size(1) == hidden.size(-1), who, "weight is ",
                  describe_tensor(weight.sizes(), weight.scalar_type()), ", expected [V, ", hidden.size(-1),
                  "] (C from hidden ", describe_tensor(hidden.sizes(), hidden.scalar_type()), ")");
  ACCEL_CHECK_ARG(target.numel() * hidden.size(-1) == hidden.numel(), who, "target has ", target.numel(),
                  " elements, expected one per row of hidden (", hidden.numel() / std::max<int64_t>(hidden.size(-1), 1),
                  ")");
  ACCEL_CHECK_ARG(target.scalar_type() == torch::kLong, who, "target is ",
                  describe_tensor(target.sizes(), target.scalar_type()), ", expected int64 class indices");
  ACCEL_CHECK_ARG(o.chunk_size() >= 0, who, "chunk_size is ", o.chunk_size(), ", expected >= 0 (0: automatic)");
  ACCEL_CHECK_ARG(o.pad_to() >= 1, who, "pad_to is ", o.pad_to(), ", expected >= 1");
}

// The dtype the GEMMs run in: autocast's when it is on for this device.
torch::ScalarType compute_dtype(const torch::Tensor& hidden, const torch::Tensor& weight) {
  const auto device = hidden.device().type();
  if (at::autocast::is_autocast_enabled(device)) return at::autocast::get_autocast_dtype(device);
  return c10::promoteTypes(hidden.scalar_type(), weight.scalar_type());
}

struct Result {
  torch::Tensor loss;         // 0-dim float32: mean over valid targets
  torch::Tensor grad_hidden;  // [N, C] compute dtype, times n_valid (not yet divided)
  torch::Tensor grad_weight;  // [V, C] float32 (or float64) view, times n_valid
  torch::Tensor inv_count;    // 0-dim float32: 1 / n_valid
};

Result compute(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& target,
               const LinearCrossEntropyOptions& o, bool want_grads) {
  torch::NoGradGuard no_grad;
  // The dtypes below are explicit: autocast would turn the log-softmax
  // into a float32 copy of the whole chunk first.
  const auto cdt = compute_dtype(hidden, weight);
  const detail::AutocastOff autocast_off(hidden.device().type());

  const int64_t C = hidden.size(-1), V = weight.size(0);
  const int64_t N = hidden.numel() / std::max<int64_t>(C, 1);
  const int64_t Vp = (V + o.pad_to() - 1) / o.pad_to() * o.pad_to();
  auto h = hidden.reshape({N, C}).to(cdt);
  auto t = target.reshape({N});
  auto w = weight.to(cdt);
  if (Vp != V) {
    auto padded = torch::zeros({Vp, C}, w.options());
    padded.narrow(0, 0, V).copy_(w);
    w = padded;
  }
  const auto valid = t.ne(o.ignore_index());
  const auto safe_t = torch::where(valid, t, torch::zeros_like(t));
  const int64_t chunk =
      o.chunk_size() > 0 ? o.chunk_size() : std::max<int64_t>(1, (int64_t{1} << 28) / std::max<int64_t>(Vp, 1));

  Result r;
  auto loss_sum = torch::zeros({}, hidden.options().dtype(torch::kFloat));
  if (want_grads) {
    r.grad_hidden = torch::empty({N, C}, h.options());
    // Summed over chunks in float32 at least (16-bit sums would drift).
    r.grad_weight = torch::zeros({Vp, C}, h.options().dtype(c10::promoteTypes(cdt, torch::kFloat)));
  }
  // Targets as the kernel reads them (ignore_index included), contiguous.
  const auto t_flat = t.contiguous();
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t n = std::min(chunk, N - r0);
    auto hc = h.narrow(0, r0, n);
    auto vc = valid.narrow(0, r0, n);
    auto tc = safe_t.narrow(0, r0, n).unsqueeze(1);
    // Logits in float32 for the softmax: on CUDA the 16-bit GEMM writes
    // them in float32 directly (unless float32_logits is off); elsewhere
    // through a copy (the kernel reads 16-bit logits as they are).
    const bool low = cdt == torch::kBFloat16 || cdt == torch::kHalf;
    auto logits = low && hc.is_cuda() && o.float32_logits() ? at::mm(hc, w.t(), torch::kFloat) : at::mm(hc, w.t());
#if ACCEL_CUDA_KERNELS
    if (o.fused_kernel() && fused_kernels_enabled() &&
        kernels::softmax_cross_entropy_supports(logits, torch::Tensor())) {
      // One kernel: the rows' losses and (softmax - one_hot) in the GEMMs'
      // dtype, over the logits when they have that dtype. Ignored rows get a zero
      // gradient, so the masks of the ATen path below are not needed.
      auto row_loss = torch::empty({n}, logits.options().dtype(torch::kFloat));
      torch::Tensor grad_logits;
      if (want_grads)
        grad_logits = cdt == logits.scalar_type() ? logits : torch::empty_like(logits, logits.options().dtype(cdt));
      kernels::softmax_cross_entropy(logits, t_flat.narrow(0, r0, n), V, o.ignore_index(), row_loss, grad_logits);
      loss_sum.add_(row_loss.sum());
      if (!want_grads) continue;
      logits = torch::Tensor();
      auto gh = r.grad_hidden.narrow(0, r0, n);
      at::mm_out(gh, grad_logits, w);
      if (cdt == r.grad_weight.scalar_type())
        r.grad_weight.addmm_(grad_logits.t(), hc);
      else
        at::addmm_out(r.grad_weight, r.grad_weight, grad_logits.t(), hc, torch::kFloat);
      continue;
    }
#endif
    if (low) logits = logits.to(torch::kFloat);
    if (Vp != V) logits.narrow(1, V, Vp - V).fill_(-std::numeric_limits<double>::infinity());
    auto logp = at::_log_softmax(logits, 1, false);
    logits = torch::Tensor();
    loss_sum.sub_((logp.gather(1, tc).squeeze(1) * vc).sum().to(torch::kFloat));
    if (!want_grads) continue;
    // d loss_row / d logits = softmax - one_hot(target); ignored rows get
    // zero through their masked hidden rows (grad_weight) and output rows.
    auto grad_logits = torch::empty_like(logp, logp.options().dtype(cdt));
    at::exp_out(grad_logits, logp);
    logp = torch::Tensor();
    grad_logits.scatter_add_(1, tc, torch::full({n, 1}, -1.0, grad_logits.options()));
    auto gh = r.grad_hidden.narrow(0, r0, n);
    at::mm_out(gh, grad_logits, w);
    gh.mul_(vc.unsqueeze(1));
    auto hm = hc * vc.unsqueeze(1).to(hc.scalar_type());
    if (cdt == r.grad_weight.scalar_type())
      r.grad_weight.addmm_(grad_logits.t(), hm);
    else if (hm.is_cuda())  // 16-bit GEMM accumulating into the float32 sum
      at::addmm_out(r.grad_weight, r.grad_weight, grad_logits.t(), hm, torch::kFloat);
    else
      r.grad_weight.add_(at::mm(grad_logits.t(), hm));
  }
  r.inv_count = valid.sum().to(torch::kFloat).reciprocal();
  r.loss = loss_sum * r.inv_count;
  if (want_grads) r.grad_weight = r.grad_weight.narrow(0, 0, V);
  return r;
}

struct LinearCrossEntropyFunction : torch::autograd::Function<LinearCrossEntropyFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& target, int64_t chunk_size, int64_t ignore_index, int64_t pad_to) {
    // Autocast is thread-local state that apply() leaves as the caller had it.
    auto r = compute(hidden, weight, target,
                     LinearCrossEntropyOptions().chunk_size(chunk_size).ignore_index(ignore_index).pad_to(pad_to),
                     /*want_grads=*/true);
    ctx->saved_data["grad_hidden"] = r.grad_hidden;
    ctx->saved_data["grad_weight"] = r.grad_weight;
    ctx->saved_data["inv_count"] = r.inv_count;
    ctx->saved_data["hidden_dtype"] = static_cast<int64_t>(hidden.scalar_type());
    ctx->saved_data["weight_dtype"] = static_cast<int64_t>(weight.scalar_type());
    ctx->saved_data["hidden_sizes"] = hidden.sizes().vec();
    return r.loss;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    auto scale = grad_outputs[0].to(torch::kFloat) * ctx->saved_data["inv_count"].toTensor();
    auto gh = ctx->saved_data["grad_hidden"].toTensor();
    auto gw = ctx->saved_data["grad_weight"].toTensor();
    const auto hd = static_cast<torch::ScalarType>(ctx->saved_data["hidden_dtype"].toInt());
    const auto wd = static_cast<torch::ScalarType>(ctx->saved_data["weight_dtype"].toInt());
    auto grad_hidden = (gh * scale.to(gh.scalar_type())).to(hd).view(ctx->saved_data["hidden_sizes"].toIntVector());
    auto grad_weight = (gw * scale.to(gw.scalar_type())).to(wd);
    return {grad_hidden, grad_weight, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& target, const LinearCrossEntropyOptions& options) {
  check(hidden, weight, target, options);
  const bool needs_grad = torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  if (!needs_grad) return compute(hidden, weight, target, options, /*want_grads=*/false).loss;
  return LinearCrossEntropyFunction::apply(hidden, weight, target, options.chunk_size(), options.ignore_index(),
                                           options.pad_to());
}

}  // namespace accel
