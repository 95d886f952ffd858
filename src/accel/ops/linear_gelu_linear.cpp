#include "accel/ops/linear_gelu_linear.h"

#include <ATen/ops/addmm.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/gelu_backward.h>
#include <ATen/ops/linear.h>
#include <torch/autograd.h>

#include "accel/ops/autocast_gemm.h"
#include "accel/ops/cuda_kernels.h"
#include "accel/ops/fused_kernels.h"
#include "accel/util/check.h"
#include "accel/util/format.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/gemm_epilogue.h"
#endif

namespace accel {

namespace {

void check(const torch::Tensor& x, const torch::Tensor& fc_weight, const torch::Tensor& fc_bias,
           const torch::Tensor& proj_weight, const torch::Tensor& proj_bias) {
  constexpr const char* who = "linear_gelu_linear: ";
  ACCEL_CHECK_ARG(x.defined() && fc_weight.defined() && proj_weight.defined(), who,
                  "x, fc_weight and proj_weight must be defined");
  auto shape = [](const torch::Tensor& t) { return describe_tensor(t.sizes(), t.scalar_type()); };
  ACCEL_CHECK_ARG(x.dim() >= 1, who, "x is ", shape(x), ", expected [..., C]");
  const int64_t C = x.size(-1);
  ACCEL_CHECK_ARG(fc_weight.dim() == 2 && fc_weight.size(1) == C, who, "fc_weight is ", shape(fc_weight),
                  ", expected [H, ", C, "] (C from x)");
  const int64_t H = fc_weight.size(0);
  ACCEL_CHECK_ARG(!fc_bias.defined() || (fc_bias.dim() == 1 && fc_bias.size(0) == H), who, "fc_bias is ",
                  shape(fc_bias), ", expected [", H, "] (H from fc_weight)");
  ACCEL_CHECK_ARG(proj_weight.dim() == 2 && proj_weight.size(1) == H, who, "proj_weight is ", shape(proj_weight),
                  ", expected [C_out, ", H, "] (H from fc_weight)");
  ACCEL_CHECK_ARG(!proj_bias.defined() || (proj_bias.dim() == 1 && proj_bias.size(0) == proj_weight.size(0)), who,
                  "proj_bias is ", shape(proj_bias), ", expected [", proj_weight.size(0), "] (C_out from proj_weight)");
}

#if ACCEL_CUDA_KERNELS
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The GEMMs with their epilogues; where cuBLASLt offers no algorithm for
// one, that step runs as ATen (the same math).
struct LinearGeluLinearFunction : torch::autograd::Function<LinearGeluLinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& fc_weight,
                               const torch::Tensor& fc_bias, const torch::Tensor& proj_weight,
                               const torch::Tensor& proj_bias) {
    const int64_t C = x.size(-1), H = fc_weight.size(0), C_out = proj_weight.size(0);
    const auto x2 = x.reshape({-1, C}).contiguous();
    auto hidden = torch::empty({x2.size(0), H}, x2.options());
    auto pre = torch::empty_like(hidden);
    if (!(kernels::gemm_epilogue_supports(x2) && kernels::linear_bias_gelu(x2, fc_weight, fc_bias, hidden, pre))) {
      pre = at::addmm(fc_bias, x2, fc_weight.t());
      hidden = at::gelu(pre, "tanh");
    }
    ctx->save_for_backward({x2, fc_weight, proj_weight, pre, hidden});
    auto out_shape = x.sizes().vec();
    out_shape.back() = C_out;
    return at::addmm(proj_bias, hidden, proj_weight.t()).view(out_shape);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x2 = saved[0], &fc_weight = saved[1], &proj_weight = saved[2], &pre = saved[3], &hidden = saved[4];
    const int64_t C_out = proj_weight.size(0), H = fc_weight.size(0);
    const auto grad = grads[0].reshape({-1, C_out}).contiguous();
    const bool lt = kernels::gemm_epilogue_supports(grad);

    auto grad_proj_weight = torch::empty_like(proj_weight);
    auto grad_proj_bias = torch::empty({C_out}, grad.options());
    if (!(lt && kernels::linear_weight_and_bias_grad(grad, hidden, grad_proj_weight, grad_proj_bias))) {
      grad_proj_weight = grad.t().mm(hidden);
      grad_proj_bias = grad.sum(0);
    }
    // GELU's derivative as its own element-wise pass: cuBLASLt's
    // DGELU_BGRAD epilogue ran it as a separate, slower kernel (measured on
    // an H200: 0.32 ms a call at GPT-2's 16k x 3072, against ~0.1 ms here).
    const auto grad_pre = at::gelu_backward(grad.mm(proj_weight), pre, "tanh");
    torch::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      auto shape = grads[0].sizes().vec();
      shape.back() = x2.size(1);
      grad_x = grad_pre.mm(fc_weight).view(shape);
    }
    auto grad_fc_weight = torch::empty_like(fc_weight);
    auto grad_fc_bias = torch::empty({H}, grad.options());
    if (!(lt && kernels::linear_weight_and_bias_grad(grad_pre, x2, grad_fc_weight, grad_fc_bias))) {
      grad_fc_weight = grad_pre.t().mm(x2);
      grad_fc_bias = grad_pre.sum(0);
    }
    return {grad_x, grad_fc_weight, grad_fc_bias, grad_proj_weight, grad_proj_bias};
  }
};

// Whether the epilogue GEMMs take these inputs (after autocast's casts).
bool takes(const torch::Tensor& x, const torch::Tensor& fc_weight, const torch::Tensor& fc_bias,
           const torch::Tensor& proj_weight, const torch::Tensor& proj_bias) {
  if (!fc_bias.defined() || !proj_bias.defined() || !x.is_cuda()) return false;
  const auto type = x.scalar_type();
  for (const auto* t : {&fc_weight, &fc_bias, &proj_weight, &proj_bias})
    if (t->scalar_type() != type || t->device() != x.device()) return false;
  return kernels::gemm_epilogue_supports(fc_weight) && kernels::gemm_epilogue_supports(proj_weight) &&
         kernels::gemm_epilogue_supports_bias(fc_bias) && kernels::gemm_epilogue_supports_bias(proj_bias) &&
         fc_weight.size(0) % 8 == 0 && proj_weight.size(0) % 8 == 0;
}
#endif

}  // namespace

torch::Tensor linear_gelu_linear(const torch::Tensor& x, const torch::Tensor& fc_weight, const torch::Tensor& fc_bias,
                                 const torch::Tensor& proj_weight, const torch::Tensor& proj_bias,
                                 const LinearGeluLinearOptions& options) {
  check(x, fc_weight, fc_bias, proj_weight, proj_bias);
#if ACCEL_CUDA_KERNELS
  if (options.fused_kernel() && x.is_cuda() && fused_kernels_enabled()) {
    const auto device = x.device().type();
    auto in = [&](const torch::Tensor& t) { return detail::autocast_gemm_input(t, device); };
    auto xc = in(x), w1 = in(fc_weight), b1 = in(fc_bias), w2 = in(proj_weight), b2 = in(proj_bias);
    if (takes(xc, w1, b1, w2, b2)) {
      const detail::AutocastOff autocast_off(device);
      return LinearGeluLinearFunction::apply(xc, w1, b1, w2, b2);
    }
  }
#endif
  return at::linear(at::gelu(at::linear(x, fc_weight, fc_bias), "tanh"), proj_weight, proj_bias);
}

}  // namespace accel
