#include "accel/ops/add_layer_norm.h"

#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include "accel/ops/cuda_kernels.h"
#include "accel/ops/fused_kernels.h"
#include "accel/util/check.h"
#include "accel/util/format.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/add_layer_norm.h"
#endif

namespace accel {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

void check(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& weight,
           const torch::Tensor& bias, const AddLayerNormOptions& o) {
  constexpr const char* who = "add_layer_norm: ";
  ACCEL_CHECK_ARG(x.defined() && residual.defined(), who, "x and residual must be defined");
  ACCEL_CHECK_ARG(x.dim() >= 1 && x.size(-1) >= 1, who, "x is ", describe_tensor(x.sizes(), x.scalar_type()),
                  ", expected [..., C] with C >= 1");
  ACCEL_CHECK_ARG(x.sizes().equals(residual.sizes()), who, "residual is ",
                  describe_tensor(residual.sizes(), residual.scalar_type()), ", expected x's shape ",
                  describe_tensor(x.sizes(), x.scalar_type()));
  const int64_t C = x.size(-1);
  for (const auto* p : {&weight, &bias})
    ACCEL_CHECK_ARG(!p->defined() || (p->dim() == 1 && p->size(0) == C), who, p == &weight ? "weight" : "bias", " is ",
                    describe_tensor(p->sizes(), p->scalar_type()), ", expected [", C, "] (C from x)");
  ACCEL_CHECK_ARG(o.eps() >= 0, who, "eps is ", o.eps(), ", expected >= 0");
}

#if ACCEL_CUDA_KERNELS
torch::Tensor present(const torch::Tensor& t) { return t.numel() > 0 ? t : torch::Tensor(); }
torch::Tensor or_empty(const torch::Tensor& t, const torch::Tensor& like) {
  return t.defined() ? t : torch::empty({0}, like.options().dtype(torch::kFloat));
}

// Forward and backward of the kernels as one autograd node with two outputs.
struct AddLayerNormFunction : torch::autograd::Function<AddLayerNormFunction> {
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& residual,
                             const torch::Tensor& weight, const torch::Tensor& bias, double eps, int64_t out_dtype) {
    // Absent weight and bias come as empty tensors (autograd's inputs must be defined).
    auto f = kernels::add_layer_norm_forward(x, residual, present(weight), present(bias), eps,
                                             static_cast<c10::ScalarType>(out_dtype));
    ctx->save_for_backward({f.sum, f.mean, f.rstd, weight});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["residual_dtype"] = static_cast<int64_t>(residual.scalar_type());
    ctx->saved_data["has_bias"] = present(bias).defined();
    ctx->saved_data["bias_dtype"] = static_cast<int64_t>(bias.scalar_type());
    return {f.sum, f.out};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &sum = saved[0], &mean = saved[1], &rstd = saved[2];
    const auto weight = present(saved[3]);
    const auto& grad_sum_in = grads[0];
    const auto& grad_out = grads[1];
    const bool need_affine = ctx->needs_input_grad(2) || ctx->needs_input_grad(3);
    torch::Tensor grad_sum, grad_weight, grad_bias;
    if (grad_out.defined()) {
      auto g = kernels::add_layer_norm_backward(grad_out, grad_sum_in, sum, mean, rstd, weight, need_affine);
      grad_sum = g.grad_sum;
      if (ctx->needs_input_grad(2) && weight.defined()) grad_weight = g.grad_weight.to(weight.scalar_type());
      if (ctx->needs_input_grad(3) && ctx->saved_data["has_bias"].toBool())
        grad_bias = g.grad_bias.to(static_cast<c10::ScalarType>(ctx->saved_data["bias_dtype"].toInt()));
    } else {
      grad_sum = grad_sum_in;  // only the residual stream's gradient: none for weight and bias
    }
    auto as = [&](const char* key) { return static_cast<c10::ScalarType>(ctx->saved_data[key].toInt()); };
    torch::Tensor grad_x, grad_residual;
    if (grad_sum.defined()) {
      if (ctx->needs_input_grad(0)) grad_x = grad_sum.to(as("x_dtype"));
      if (ctx->needs_input_grad(1)) grad_residual = grad_sum.to(as("residual_dtype"));
    }
    return {grad_x, grad_residual, grad_weight, grad_bias, torch::Tensor(), torch::Tensor()};
  }
};
#endif

}  // namespace

AddLayerNormOutput add_layer_norm(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& weight,
                                  const torch::Tensor& bias, const AddLayerNormOptions& options) {
  check(x, residual, weight, bias, options);
#if ACCEL_CUDA_KERNELS
  if (options.fused_kernel() && x.is_cuda() && fused_kernels_enabled()) {
    const auto sum_dtype = c10::promoteTypes(x.scalar_type(), residual.scalar_type());
    // The kernels add into the first operand's type: put the wider one first.
    const bool swap = sum_dtype != x.scalar_type() && sum_dtype == residual.scalar_type();
    const auto& a = swap ? residual : x;
    const auto& b = swap ? x : residual;
    const auto out_dtype = at::autocast::is_autocast_enabled(c10::DeviceType::CUDA) ? torch::kFloat : sum_dtype;
    if (sum_dtype == a.scalar_type() && kernels::add_layer_norm_supports(a, b, weight, bias, out_dtype)) {
      auto outs = AddLayerNormFunction::apply(a, b, or_empty(weight, a), or_empty(bias, a), options.eps(),
                                              static_cast<int64_t>(out_dtype));
      return {outs[0], outs[1]};
    }
  }
#endif
  auto sum = x + residual;
  auto normed = torch::layer_norm(sum, {x.size(-1)}, weight, bias, options.eps());
  return {sum, normed};
}

}  // namespace accel
