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
//
// The Trainer's neftune_noise_alpha reaches the embeddings through an
// EmbeddingsHook. LibTorch modules have no forward hooks, so the model
// author provides the seam: the model holds a hook, applies it to its input
// embeddings' output when set, and ModelFunctions::set_input_embeddings_hook
// tells the Trainer how to set it:
//
//   struct NetImpl : torch::nn::Module {
//     accel::EmbeddingsHook embeddings_hook;  // empty: no hook
//     torch::Tensor forward(const torch::Tensor& ids) {
//       auto h = wte(ids);
//       if (embeddings_hook) h = embeddings_hook(h);
//       ...
//     }
//   };
//   functions.set_input_embeddings_hook([](Net& net, accel::EmbeddingsHook hook) {
//     net->embeddings_hook = std::move(hook);
//   });
#include <torch/torch.h>

#include <functional>
#include <memory>
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

/// A function a model applies to its input embeddings' output (batch, L, d).
using EmbeddingsHook = std::function<torch::Tensor(const torch::Tensor&)>;

/// Transformers' neftune_post_forward_hook: neftune_noise with `alpha`
/// (from the default generator of the embeddings' device) while `module`
/// is in training mode; the embeddings unchanged in evaluation mode.
ACCEL_API EmbeddingsHook neftune_hook(std::shared_ptr<const torch::nn::Module> module, double alpha);

}  // namespace accel
