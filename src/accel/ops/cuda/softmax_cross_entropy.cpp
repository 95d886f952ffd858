#include "accel/ops/cuda/softmax_cross_entropy.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "accel/ops/cuda/dtype_of.h"
#include "accel/ops/cuda/softmax_cross_entropy_kernel.h"
#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel::kernels {

namespace {

bool row_major_cuda(const torch::Tensor& t) {
  return t.is_cuda() && t.dim() == 2 && t.stride(1) == 1 && t.stride(0) >= t.size(1) && dtype_of(t.scalar_type());
}

}  // namespace

bool softmax_cross_entropy_supports(const torch::Tensor& logits, const torch::Tensor& grad) {
  return row_major_cuda(logits) && (!grad.defined() || row_major_cuda(grad));
}

void softmax_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target, int64_t classes,
                           int64_t ignore_index, const torch::Tensor& loss, const torch::Tensor& grad,
                           double grad_scale) {
  constexpr const char* who = "softmax_cross_entropy (CUDA kernel): ";
  ACCEL_CHECK_ARG(softmax_cross_entropy_supports(logits, grad), who, "logits ",
                  describe_tensor(logits.sizes(), logits.scalar_type()), " on ", logits.device(),
                  grad.defined() ? " and grad " + describe_tensor(grad.sizes(), grad.scalar_type()) : std::string(),
                  ": expected CUDA [rows, cols] float32/bfloat16/float16 with contiguous rows");
  const int64_t rows = logits.size(0), cols = logits.size(1);
  ACCEL_CHECK_ARG(classes >= 1 && classes <= cols, who, "classes is ", classes, ", expected 1..", cols,
                  " (the logits' columns)");
  ACCEL_CHECK_ARG(target.scalar_type() == torch::kLong && target.is_contiguous() && target.numel() == rows &&
                      target.device() == logits.device(),
                  who, "target is ", describe_tensor(target.sizes(), target.scalar_type()), " on ", target.device(),
                  ", expected ", rows, " contiguous int64 on ", logits.device());
  ACCEL_CHECK_ARG(loss.scalar_type() == torch::kFloat && loss.is_contiguous() && loss.numel() == rows &&
                      loss.device() == logits.device(),
                  who, "loss is ", describe_tensor(loss.sizes(), loss.scalar_type()), ", expected ", rows,
                  " contiguous float32 on ", logits.device());
  ACCEL_CHECK_ARG(!grad.defined() || (grad.size(0) == rows && grad.size(1) == cols && grad.device() == logits.device()),
                  who, "grad is ", describe_tensor(grad.sizes(), grad.scalar_type()), ", expected [", rows, ", ", cols,
                  "] on ", logits.device());
  // In place only as the same elements: a partly overlapping grad would be
  // overwritten before it is read.
  ACCEL_CHECK_ARG(!grad.defined() || !grad.is_alias_of(logits) ||
                      (grad.data_ptr() == logits.data_ptr() && grad.stride(0) == logits.stride(0) &&
                       grad.scalar_type() == logits.scalar_type()),
                  who, "grad overlaps logits without being the same elements");
  if (rows == 0) return;

  const c10::cuda::CUDAGuard device(logits.device());
  SoftmaxCrossEntropyArgs a;
  a.logits = logits.data_ptr();
  a.logits_dtype = *dtype_of(logits.scalar_type());
  a.ld_logits = logits.stride(0);
  a.target = target.data_ptr<int64_t>();
  a.loss = loss.data_ptr<float>();
  if (grad.defined()) {
    a.grad = grad.data_ptr();
    a.grad_dtype = *dtype_of(grad.scalar_type());
    a.ld_grad = grad.stride(0);
  }
  a.rows = rows;
  a.classes = classes;
  a.cols = cols;
  a.ignore_index = ignore_index;
  a.grad_scale = static_cast<float>(grad_scale);
  launch_softmax_cross_entropy(a, at::cuda::getCurrentCUDAStream());
}

}  // namespace accel::kernels
