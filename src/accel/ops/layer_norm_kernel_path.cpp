#include "accel/ops/layer_norm_kernel_path.h"

#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include "accel/ops/cuda_kernels.h"
#include "accel/ops/fused_kernels.h"
#include "accel/util/check.h"
#include "accel/util/format.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/add_layer_norm.h"
#endif

namespace accel::detail {

void check_layer_norm_args(const char* who, const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& bias, double eps, std::optional<c10::ScalarType> output_dtype) {
  ACCEL_CHECK_ARG(x.dim() >= 1 && x.size(-1) >= 1, who, "x is ", describe_tensor(x.sizes(), x.scalar_type()),
                  ", expected [..., C] with C >= 1");
  const int64_t C = x.size(-1);
  for (const auto* p : {&weight, &bias})
    ACCEL_CHECK_ARG(!p->defined() || (p->dim() == 1 && p->size(0) == C), who, p == &weight ? "weight" : "bias", " is ",
                    describe_tensor(p->sizes(), p->scalar_type()), ", expected [", C, "] (C from x)");
  ACCEL_CHECK_ARG(eps >= 0, who, "eps is ", eps, ", expected >= 0");
  ACCEL_CHECK_ARG(!output_dtype || c10::isFloatingType(*output_dtype), who, "output_dtype is ",
                  output_dtype.value_or(c10::ScalarType::Undefined), ", expected a floating-point type");
}

torch::Tensor aten_layer_norm(const torch::Tensor& sum, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps, std::optional<c10::ScalarType> output_dtype) {
  auto normed = torch::layer_norm(sum, {sum.size(-1)}, weight, bias, eps);
  return output_dtype ? normed.to(*output_dtype) : normed;
}

#if ACCEL_CUDA_KERNELS
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

torch::Tensor present(const torch::Tensor& t) { return t.numel() > 0 ? t : torch::Tensor(); }
torch::Tensor or_empty(const torch::Tensor& t, const torch::Tensor& like) {
  return t.defined() ? t : torch::empty({0}, like.options().dtype(torch::kFloat));
}

// Forward and backward of the kernels as one autograd node: outputs {sum,
// normed} with a residual, {normed} without one (the sum is x).
struct LayerNormFunction : torch::autograd::Function<LayerNormFunction> {
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& residual,
                             const torch::Tensor& weight, const torch::Tensor& bias, bool add, double eps,
                             int64_t out_dtype) {
    // Absent residual, weight and bias come as empty tensors (autograd's
    // inputs must be defined); `add` says whether there is a residual (it
    // may be empty itself: no rows).
    const auto r = add ? residual : torch::Tensor();
    auto f = kernels::add_layer_norm_forward(x, r, present(weight), present(bias), eps,
                                             static_cast<c10::ScalarType>(out_dtype));
    ctx->save_for_backward({f.sum, f.mean, f.rstd, weight});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["has_residual"] = add;
    ctx->saved_data["residual_dtype"] = static_cast<int64_t>(residual.scalar_type());
    ctx->saved_data["has_bias"] = present(bias).defined();
    ctx->saved_data["bias_dtype"] = static_cast<int64_t>(bias.scalar_type());
    if (!r.defined()) return {f.out};
    return {f.sum, f.out};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &sum = saved[0], &mean = saved[1], &rstd = saved[2];
    const auto weight = present(saved[3]);
    const bool has_residual = ctx->saved_data["has_residual"].toBool();
    const torch::Tensor grad_sum_in = has_residual ? grads[0] : torch::Tensor();
    const auto& grad_out = has_residual ? grads[1] : grads[0];
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
      if (has_residual && ctx->needs_input_grad(1)) grad_residual = grad_sum.to(as("residual_dtype"));
    }
    return {grad_x, grad_residual, grad_weight, grad_bias, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace
#endif

std::optional<KernelLayerNorm> kernel_layer_norm(const torch::Tensor& x, const torch::Tensor& residual,
                                                 const torch::Tensor& weight, const torch::Tensor& bias, double eps,
                                                 std::optional<c10::ScalarType> output_dtype) {
#if ACCEL_CUDA_KERNELS
  if (!x.is_cuda() || !fused_kernels_enabled()) return std::nullopt;
  // ATen's output type: LayerNorm is one of autocast's float32 ops.
  const auto natural = at::autocast::is_autocast_enabled(c10::DeviceType::CUDA) ? torch::kFloat : x.scalar_type();
  const auto wanted = output_dtype.value_or(natural);
  // The kernel rounds its float32 result once: straight into bf16 that is
  // the cast of ATen's result (float32 or already bf16). Any other type
  // different from ATen's would carry digits ATen's rounding drops: the
  // kernel writes ATen's type and the cast follows, as in the reference.
  const auto out_dtype = (wanted == natural || wanted == torch::kBFloat16) ? wanted : natural;
  if (!kernels::add_layer_norm_supports(x, residual, weight, bias, out_dtype)) return std::nullopt;
  const bool add = residual.defined();
  auto outs = LayerNormFunction::apply(x, or_empty(residual, x), or_empty(weight, x), or_empty(bias, x), add, eps,
                                       static_cast<int64_t>(out_dtype));
  KernelLayerNorm k;
  if (add) k.sum = outs[0];
  k.normed = add ? outs[1] : outs[0];
  if (k.normed.scalar_type() != wanted) k.normed = k.normed.to(wanted);
  return k;
#else
  (void)x, (void)residual, (void)weight, (void)bias, (void)eps, (void)output_dtype;
  return std::nullopt;
#endif
}

}  // namespace accel::detail
