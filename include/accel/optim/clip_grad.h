#pragma once
// Gradient clipping that never waits for the GPU. LibTorch's
// torch::nn::utils::clip_grad_norm_ returns the norm as a double, which
// reads it back from the device every step: the host stalls until backward
// is done, and such a step cannot be captured in a CUDA graph. These
// compute the norm with the multi-tensor kernels (_foreach_norm, one launch
// per device and dtype) and scale by a clip coefficient that stays a
// tensor, as PyTorch's Python clip_grad_norm_ does.
//
//   auto norm = accel::clip_grad_norm(net->parameters(), 1.0);   // 0-dim tensor
//   if (step % 100 == 0) std::cout << norm.item<double>();        // read it only when needed
#include <vector>

#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

/// Scales the gradients of `parameters` (those that have one) so that their
/// total `norm_type` norm is at most `max_norm`; returns the total norm
/// before clipping as a 0-dim float tensor on the first gradient's device
/// (a zero CPU tensor when no parameter has a gradient). norm_type may be
/// inf (the largest absolute element). Throws std::invalid_argument for a
/// negative max_norm or a norm_type below 0.
ACCEL_API torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& parameters, double max_norm,
                                       double norm_type = 2.0);

/// The same over gradient tensors themselves (not their parameters).
ACCEL_API torch::Tensor clip_gradients(const std::vector<torch::Tensor>& grads, double max_norm,
                                       double norm_type = 2.0);

/// The total norm of the gradients without changing them.
ACCEL_API torch::Tensor grad_norm(const std::vector<torch::Tensor>& parameters, double norm_type = 2.0);

}  // namespace accel
