#pragma once
// linear_cross_entropy: cross_entropy(linear(hidden, weight), target) for a
// language model's output layer, without ever holding the full logits.
//
// The usual way materialises [tokens, vocab] logits (823 MB in bf16 for
// GPT-2 at 8 x 1024 tokens), then a float32 copy, log-probabilities and
// their gradient of the same size, and runs the output GEMMs with a vocab
// (50257) that is not a multiple of 8, which sends cuBLAS to slow
// unaligned kernels. Here the rows go through in chunks: each chunk's
// logits are made, turned into its loss and into the gradient of its
// logits at once (softmax minus one-hot), and folded into the gradients of
// `hidden` and `weight`, which are what backward returns. The vocab is
// padded to a multiple of `pad_to` inside (the padding columns get -inf
// logits, so they change nothing). Peak extra memory is one chunk's logits.
//
//   auto h = transformer(tokens);                                   // [B, T, C]
//   auto loss = accel::linear_cross_entropy(h, wte->weight, targets); // mean over targets
//   loss.backward();
//
// On CUDA, where accel's kernels are built (accel/ops/cuda_kernels.h), each
// chunk's softmax, loss and logit gradient is one kernel that reads the
// logits twice and writes the gradient once
// (src/accel/ops/cuda/softmax_cross_entropy_kernel.cu); elsewhere, and with
// fused_kernel(false) or ACCEL_FUSED_KERNELS=0 (accel/ops/fused_kernels.h),
// the same math runs as ATen ops (log-softmax, exp, scatter), the
// reference the kernel is tested against.
//
// Under autocast the GEMMs run in the autocast dtype and the softmax in
// float32, like linear + cross_entropy under autocast. Targets equal to
// ignore_index count neither in the loss nor in the mean. The gradients
// are computed during forward when anything needs them, so calling
// backward twice (retain_graph) returns them again; double backward is
// not supported.
#include <cstdint>

#include <torch/arg.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API LinearCrossEntropyOptions {
  /// Rows per chunk; 0 picks one so a chunk's logits hold about 2^28 elements.
  TORCH_ARG(int64_t, chunk_size) = 0;
  /// Targets with this value are left out (PyTorch's default -100).
  TORCH_ARG(int64_t, ignore_index) = -100;
  /// The vocab is padded to a multiple of this for the GEMMs (1: no padding).
  TORCH_ARG(int64_t, pad_to) = 64;
  /// Use accel's one-pass CUDA kernel for each chunk's softmax and gradient
  /// where it is built; false: the ATen ops on every device.
  TORCH_ARG(bool, fused_kernel) = true;
  /// Under 16-bit GEMMs on CUDA, have the GEMM write each chunk's logits in
  /// float32 (true) or in the 16-bit type, rounded as linear() under
  /// autocast rounds them (false: half the chunk's memory traffic, and the
  /// kernel writes the gradient over them). The CPU always rounds.
  TORCH_ARG(bool, float32_logits) = true;
};

/// hidden [..., C], weight [V, C], target [...] (int64, values in [0, V) or
/// ignore_index) -> the mean cross-entropy over the targets not ignored, a
/// 0-dim float32 tensor. Throws std::invalid_argument naming a shape or
/// option that does not fit.
ACCEL_API torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                             const torch::Tensor& target,
                                             const LinearCrossEntropyOptions& options = {});

}  // namespace accel
