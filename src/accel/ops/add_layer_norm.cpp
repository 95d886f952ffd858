#include "accel/ops/add_layer_norm.h"

#include "accel/ops/layer_norm_kernel_path.h"
#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel {

AddLayerNormOutput add_layer_norm(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& weight,
                                  const torch::Tensor& bias, const AddLayerNormOptions& options) {
  constexpr const char* who = "add_layer_norm: ";
  ACCEL_CHECK_ARG(x.defined() && residual.defined(), who, "x and residual must be defined");
  detail::check_layer_norm_args(who, x, weight, bias, options.eps(), options.output_dtype());
  ACCEL_CHECK_ARG(x.sizes().equals(residual.sizes()), who, "residual is ",
                  describe_tensor(residual.sizes(), residual.scalar_type()), ", expected x's shape ",
                  describe_tensor(x.sizes(), x.scalar_type()));
  if (options.fused_kernel()) {
    const auto sum_dtype = c10::promoteTypes(x.scalar_type(), residual.scalar_type());
    // The kernels add into the first operand's type: put the wider one first.
    const bool swap = sum_dtype != x.scalar_type() && sum_dtype == residual.scalar_type();
    const auto& a = swap ? residual : x;
    const auto& b = swap ? x : residual;
    if (sum_dtype == a.scalar_type())
      if (auto k = detail::kernel_layer_norm(a, b, weight, bias, options.eps(), options.output_dtype()))
        return {k->sum, k->normed};
  }
  auto sum = x + residual;
  return {sum, detail::aten_layer_norm(sum, weight, bias, options.eps(), options.output_dtype())};
}

}  // namespace accel
