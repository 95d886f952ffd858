// NEFTune's noise, with Transformers' bound (integrations/neftune.py).
#include "accel/trainer/neftune.h"

#include <cmath>

#include "accel/util/check.h"

namespace accel {

double neftune_magnitude(const torch::Tensor& embeddings, double alpha) {
  ACCEL_CHECK_ARG(embeddings.dim() == 3, "neftune: embeddings of shape ", embeddings.sizes(),
                  ", expected (batch, sequence, hidden)");
  ACCEL_CHECK_ARG(alpha > 0, "neftune: neftune_noise_alpha ", alpha, ", expected a positive number");
  // Transformers divides the Python float by a float32 tensor: the product
  // L * d is an integer tensor whose square root is float32.
  const float root = std::sqrt(static_cast<float>(embeddings.size(1) * embeddings.size(2)));
  return static_cast<double>(static_cast<float>(alpha) / root);
}

torch::Tensor neftune_noise(const torch::Tensor& embeddings, double alpha, std::optional<torch::Generator> generator) {
  const double m = neftune_magnitude(embeddings, alpha);
  ACCEL_CHECK_ARG(embeddings.is_floating_point(), "neftune: embeddings of type ", embeddings.scalar_type(),
                  ", expected floating point");
  return embeddings + torch::zeros_like(embeddings).uniform_(-m, m, generator);
}

EmbeddingsHook neftune_hook(std::shared_ptr<const torch::nn::Module> module, double alpha) {
  ACCEL_CHECK_ARG(module, "neftune_hook: the module is null");
  ACCEL_CHECK_ARG(alpha > 0, "neftune: neftune_noise_alpha ", alpha, ", expected a positive number");
  return [module = std::move(module), alpha](const torch::Tensor& embeddings) {
    return module->is_training() ? neftune_noise(embeddings, alpha) : embeddings;
  };
}

}  // namespace accel
