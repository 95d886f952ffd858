#pragma once
// The small MLP the Trainer tests train (the same module as
// tests/peer/scripts/trainer_peer.py's MLP: fc1, a LayerNorm "norm", fc2),
// and datasets of rows {"x", "labels"} for it.
#include <memory>

#include <torch/torch.h>

#include "accel/data/dataset.h"

namespace accel::testing {

struct TrainerMlpImpl : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  TrainerMlpImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(8, 16));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({16})));
    fc2 = register_module("fc2", torch::nn::Linear(16, 4));
  }
  torch::Tensor logits(const torch::Tensor& x) { return fc2(torch::tanh(norm(fc1(x)))); }
  /// The batch's mean squared error: what the Trainer trains on.
  torch::Tensor forward(const TensorDict& batch) { return torch::mse_loss(logits(batch.at("x")), batch.at("labels")); }
};
TORCH_MODULE(TrainerMlp);

/// Rows i of x and y as {"x": x[i], "labels": y[i]}.
inline std::shared_ptr<Dataset<TensorDict>> rows_dataset(torch::Tensor x, torch::Tensor y) {
  return std::make_shared<LambdaDataset<TensorDict>>(x.size(0), [x, y](int64_t i) {
    return TensorDict{{"x", x[i]}, {"labels", y[i]}};
  });
}

}  // namespace accel::testing
