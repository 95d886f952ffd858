#include "accel/ops/layer_norm.h"

#include "accel/ops/layer_norm_kernel_path.h"
#include "accel/util/check.h"

namespace accel {

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                         const LayerNormOptions& options) {
  constexpr const char* who = "layer_norm: ";
  ACCEL_CHECK_ARG(x.defined(), who, "x must be defined");
  detail::check_layer_norm_args(who, x, weight, bias, options.eps(), options.output_dtype());
  if (options.fused_kernel())
    if (auto k = detail::kernel_layer_norm(x, torch::Tensor(), weight, bias, options.eps(), options.output_dtype()))
      return k->normed;
  return detail::aten_layer_norm(x, weight, bias, options.eps(), options.output_dtype());
}

}  // namespace accel
