#pragma once
// Choosing the next token from a model's logits, with transformers'
// semantics (its TemperatureLogitsWarper, TopKLogitsWarper and
// TopPLogitsWarper, applied in that order, then softmax and one draw):
//
//   gpt2::SamplingOptions sampling;
//   sampling.top_k(50).top_p(0.9).temperature(0.7);
//   auto scores = gpt2::filter_logits(logits, sampling);    // [batch, vocab], -inf where filtered
//   auto next = gpt2::sample(scores, generator);            // [batch] int64
//
// - temperature: the logits are divided by it (1: unchanged).
// - top_k: the tokens whose logit is below the k-th largest are filtered
//   (ties with the k-th are kept, so more than k may remain); 0: off.
// - top_p: over the tokens sorted by probability, ascending, those whose
//   cumulative probability stays at or below 1 - top_p are filtered; the
//   most likely token always stays; 1: off.
#include <cstdint>

#include <ATen/core/Generator.h>
#include <torch/arg.h>
#include <torch/types.h>

namespace gpt2 {

struct SamplingOptions {
  /// > 0.
  TORCH_ARG(double, temperature) = 1.0;
  /// >= 0; 0 turns it off. transformers' default is 50.
  TORCH_ARG(int64_t, top_k) = 50;
  /// In (0, 1]; 1 turns it off.
  TORCH_ARG(double, top_p) = 1.0;
};

/// Throws std::invalid_argument naming the option and its value when it is
/// outside the range above.
void check(const SamplingOptions& options);

/// `logits` [batch, vocab] (any floating dtype) -> fp32 scores [batch,
/// vocab]: scaled by the temperature, filtered tokens set to -inf.
torch::Tensor filter_logits(const torch::Tensor& logits, const SamplingOptions& options);

/// One token per row drawn from softmax(`scores`) with `generator` (a CPU
/// generator: the scores are drawn from on the CPU, so that a seed gives
/// the same tokens whatever device the model runs on). -> [batch] int64 on
/// the device of `scores`.
torch::Tensor sample(const torch::Tensor& scores, at::Generator& generator);

}  // namespace gpt2
