#include "accel/ops/cuda/add_layer_norm.h"

#include <algorithm>
#include <string>

#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/sum.h>
#include <c10/cuda/CUDAGuard.h>

#include "accel/ops/cuda/add_layer_norm_kernel.h"
#include "accel/ops/cuda/dtype_of.h"
#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel::kernels {

namespace {

constexpr const char* kWho = "add_layer_norm (CUDA kernel): ";

bool on(const torch::Tensor& t, const torch::Device& device) { return !t.defined() || t.device() == device; }

DType weight_dtype(const torch::Tensor& weight, const torch::Tensor& bias) {
  if (weight.defined()) return *dtype_of(weight.scalar_type());
  if (bias.defined()) return *dtype_of(bias.scalar_type());
  return DType::f32;
}

}  // namespace

bool add_layer_norm_supports(const torch::Tensor& x, const torch::Tensor& r, const torch::Tensor& weight,
                             const torch::Tensor& bias, c10::ScalarType out_dtype) {
  // An undefined r: no residual, the sum is x.
  if (!x.defined() || !x.is_cuda() || x.dim() < 1 || (r.defined() && !x.sizes().equals(r.sizes()))) return false;
  const int64_t C = x.size(-1);
  if (C < 1 || C > kAddLayerNormMaxCols) return false;
  const auto device = x.device();
  if (!on(r, device) || !on(weight, device) || !on(bias, device)) return false;
  for (const auto& p : {weight, bias})
    if (p.defined() && (p.dim() != 1 || p.size(0) != C)) return false;
  if (weight.defined() && bias.defined() && weight.scalar_type() != bias.scalar_type()) return false;
  const auto s = dtype_of(x.scalar_type()), o = dtype_of(out_dtype);
  const auto rd = r.defined() ? dtype_of(r.scalar_type()) : s;
  const auto wd = weight.defined() ? dtype_of(weight.scalar_type())
                                   : (bias.defined() ? dtype_of(bias.scalar_type()) : std::optional<DType>(DType::f32));
  return s && rd && o && wd && add_layer_norm_kernel_supports(*s, *rd, *wd, *o);
}

AddLayerNormForward add_layer_norm_forward(const torch::Tensor& x_in, const torch::Tensor& r_in,
                                           const torch::Tensor& weight_in, const torch::Tensor& bias_in, double eps,
                                           c10::ScalarType out_dtype) {
  ACCEL_CHECK_ARG(add_layer_norm_supports(x_in, r_in, weight_in, bias_in, out_dtype), kWho, "x ",
                  describe_tensor(x_in.sizes(), x_in.scalar_type()), ", r ",
                  r_in.defined() ? describe_tensor(r_in.sizes(), r_in.scalar_type()) : std::string("none"), " on ",
                  x_in.device(), ", output ", out_dtype,
                  ": not a combination the kernel takes (add_layer_norm_kernel.h)");
  const c10::cuda::CUDAGuard device(x_in.device());
  auto x = x_in.contiguous();
  auto r = r_in.defined() ? r_in.contiguous() : r_in;
  auto weight = weight_in.defined() ? weight_in.contiguous() : weight_in;
  auto bias = bias_in.defined() ? bias_in.contiguous() : bias_in;
  const int64_t C = x.size(-1), rows = x.numel() / C;
  AddLayerNormForward f;
  f.sum = r.defined() ? torch::empty_like(x) : x;
  f.out = torch::empty_like(x, x.options().dtype(out_dtype));
  f.mean = torch::empty({rows}, x.options().dtype(torch::kFloat));
  f.rstd = torch::empty({rows}, x.options().dtype(torch::kFloat));
  AddLayerNormForwardArgs a;
  a.x = x.data_ptr();
  a.r = r.defined() ? r.data_ptr() : nullptr;
  a.sum_dtype = *dtype_of(x.scalar_type());
  a.r_dtype = r.defined() ? *dtype_of(r.scalar_type()) : a.sum_dtype;
  a.weight = weight.defined() ? weight.data_ptr() : nullptr;
  a.bias = bias.defined() ? bias.data_ptr() : nullptr;
  a.weight_dtype = weight_dtype(weight, bias);
  a.sum = r.defined() ? f.sum.data_ptr() : nullptr;
  a.out = f.out.data_ptr();
  a.out_dtype = *dtype_of(out_dtype);
  a.mean = f.mean.data_ptr<float>();
  a.rstd = f.rstd.data_ptr<float>();
  a.rows = rows;
  a.cols = C;
  a.eps = static_cast<float>(eps);
  launch_add_layer_norm_forward(a, at::cuda::getCurrentCUDAStream());
  return f;
}

AddLayerNormBackward add_layer_norm_backward(const torch::Tensor& grad_out_in, const torch::Tensor& grad_sum_in,
                                             const torch::Tensor& sum, const torch::Tensor& mean,
                                             const torch::Tensor& rstd, const torch::Tensor& weight,
                                             bool weight_and_bias_grads) {
  const int64_t C = sum.size(-1), rows = sum.numel() / C;
  ACCEL_CHECK_ARG(grad_out_in.sizes().equals(sum.sizes()) &&
                      (!grad_sum_in.defined() || grad_sum_in.sizes().equals(sum.sizes())) && sum.is_contiguous() &&
                      mean.numel() == rows && rstd.numel() == rows,
                  kWho, "grad_out ", describe_tensor(grad_out_in.sizes(), grad_out_in.scalar_type()), ", sum ",
                  describe_tensor(sum.sizes(), sum.scalar_type()), ", mean ", mean.numel(), " and rstd ", rstd.numel(),
                  " values: expected the forward's shapes (", rows, " rows)");
  ACCEL_CHECK_ARG(add_layer_norm_supports(sum, sum, weight, torch::Tensor(), grad_out_in.scalar_type()) &&
                      (!grad_sum_in.defined() || grad_sum_in.scalar_type() == sum.scalar_type()),
                  kWho, "backward of sum ", describe_tensor(sum.sizes(), sum.scalar_type()), " with grad_out ",
                  grad_out_in.scalar_type(), ": not a combination the kernel takes (add_layer_norm_kernel.h)");
  const c10::cuda::CUDAGuard device(sum.device());
  auto grad_out = grad_out_in.contiguous();
  auto grad_sum = grad_sum_in.defined() ? grad_sum_in.contiguous() : grad_sum_in;
  auto w = weight.defined() ? weight.contiguous() : weight;
  // Enough blocks to fill the GPU a few times over, each walking many rows
  // (fewer partial rows for the final sum).
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int blocks = static_cast<int>(std::min<int64_t>(rows, int64_t{sms} * 4));
  AddLayerNormBackward g;
  g.grad_sum = torch::empty_like(sum);
  // The weight's partial sums, then the bias's: one tensor, so that one
  // reduction (one kernel, not two) finishes both.
  torch::Tensor partials, partial_w, partial_b;
  if (weight_and_bias_grads && rows > 0) {
    partials = torch::empty({2, blocks, C}, sum.options().dtype(torch::kFloat));
    partial_w = partials[0];
    partial_b = partials[1];
  }
  AddLayerNormBackwardArgs a;
  a.grad_out = grad_out.data_ptr();
  a.out_dtype = *dtype_of(grad_out.scalar_type());
  a.grad_sum = grad_sum.defined() ? grad_sum.data_ptr() : nullptr;
  a.sum = sum.data_ptr();
  a.sum_dtype = *dtype_of(sum.scalar_type());
  a.mean = mean.data_ptr<float>();
  a.rstd = rstd.data_ptr<float>();
  a.weight = w.defined() ? w.data_ptr() : nullptr;
  a.weight_dtype = w.defined() ? *dtype_of(w.scalar_type()) : DType::f32;
  a.grad_input = g.grad_sum.data_ptr();
  a.weight_grad_partial = partial_w.defined() ? partial_w.data_ptr<float>() : nullptr;
  a.bias_grad_partial = partial_b.defined() ? partial_b.data_ptr<float>() : nullptr;
  a.rows = rows;
  a.cols = C;
  a.blocks = std::max(blocks, 1);
  launch_add_layer_norm_backward(a, at::cuda::getCurrentCUDAStream());
  if (weight_and_bias_grads) {
    // Rows of 16-byte multiples, so that the bias gradient (a view of the
    // second row, as the weight's of the first) is as aligned as a tensor of
    // its own for the optimizers' vectorised kernels.
    const int64_t row = (C + 3) / 4 * 4;
    const auto type = sum.options().dtype(torch::kFloat);
    auto sums = (rows > 0 ? torch::empty({2, row}, type) : torch::zeros({2, row}, type)).narrow(1, 0, C);
    if (rows > 0) at::sum_out(sums, partials, {1});
    g.grad_weight = sums[0];
    g.grad_bias = sums[1];
  }
  return g;
}

}  // namespace accel::kernels
