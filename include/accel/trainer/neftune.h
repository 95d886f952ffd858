#pragma once
// NEFTune (Transformers' neftune_post_forward_hook): uniform noise added to
// the input embeddings' output while training,
//
//   embeddings + U(-m, m),  m = alpha / sqrt(L * d),
//
// for embeddings of shape (batch, L, d). m is computed in float32, as
// Transformers does (alpha over the float32 square root of an integer
// tensor), so the bound is the same value bit for bit.
//
//   auto noisy = accel::neftune_noise(embeddings, 5.0);
#include <torch/torch.h>

#include <optional>

#include "accel/util/export.h"

namespace accel {

/// The noise bound m for embeddings of shape (batch, L, d) and `alpha`.
ACCEL_API double neftune_magnitude(const torch::Tensor& embeddings, double alpha);

/// `embeddings` plus uniform noise in [-m, m] (m: neftune_magnitude), drawn
/// from `generator` or the default one. Throws std::invalid_argument for
/// embeddings that are not 3-dimensional floating point or alpha <= 0.
ACCEL_API torch::Tensor neftune_noise(const torch::Tensor& embeddings, double alpha,
                                      std::optional<torch::Generator> generator = std::nullopt);

}  // namespace accel
