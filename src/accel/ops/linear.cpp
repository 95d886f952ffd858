#include "accel/ops/linear.h"

#include <ATen/ops/linear.h>
#include <torch/autograd.h>

#include "accel/ops/autocast_gemm.h"
#include "accel/ops/cuda_kernels.h"
#include "accel/ops/fused_kernels.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/gemm_epilogue.h"
#endif

namespace accel {

namespace {

#if ACCEL_CUDA_KERNELS
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// at::linear forward; backward with the weight and bias gradients from one
// cuBLASLt GEMM when it takes the tensors, ATen's otherwise.
struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias) {
    ctx->save_for_backward({x, weight});
    return at::linear(x, weight, bias);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1];
    const int64_t M = weight.size(0), K = weight.size(1);
    const auto grad = grads[0].reshape({-1, M}).contiguous();
    torch::Tensor grad_x, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0)) grad_x = grad.mm(weight).view(x.sizes());
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      const auto x2 = x.reshape({-1, K}).contiguous();
      grad_weight = torch::empty_like(weight);
      grad_bias = torch::empty({M}, grad.options());
      if (!(kernels::gemm_epilogue_supports(grad) && kernels::gemm_epilogue_supports(x2) &&
            kernels::linear_weight_and_bias_grad(grad, x2, grad_weight, grad_bias))) {
        grad_weight = grad.t().mm(x2);
        grad_bias = grad.sum(0);
      }
    }
    return {grad_x, ctx->needs_input_grad(1) ? grad_weight : torch::Tensor(),
            ctx->needs_input_grad(2) ? grad_bias : torch::Tensor()};
  }
};

bool takes(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!bias.defined() || !x.is_cuda() || x.dim() < 1 || weight.dim() != 2 || bias.dim() != 1) return false;
  const auto type = x.scalar_type();
  if (weight.scalar_type() != type || bias.scalar_type() != type) return false;
  if (type != torch::kFloat && type != torch::kBFloat16 && type != torch::kHalf) return false;
  return x.size(-1) == weight.size(1) && weight.size(0) == bias.size(0) && x.size(-1) % 8 == 0 &&
         weight.size(0) % 8 == 0 && weight.is_contiguous();
}
#endif

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     const LinearOptions& options) {
#if ACCEL_CUDA_KERNELS
  if (options.fused_kernel() && x.defined() && x.is_cuda() && fused_kernels_enabled()) {
    const auto device = x.device().type();
    auto xc = detail::autocast_gemm_input(x, device);
    auto wc = detail::autocast_gemm_input(weight, device);
    auto bc = detail::autocast_gemm_input(bias, device);
    if (takes(xc, wc, bc)) {
      const detail::AutocastOff autocast_off(device);
      return LinearFunction::apply(xc, wc, bc);
    }
  }
#endif
  return at::linear(x, weight, bias);
}

}  // namespace accel
