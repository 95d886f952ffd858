#pragma once
// The small MLP the Trainer tests train (the same module as
// tests/peer/scripts/trainer_peer.py's MLP: fc1, a LayerNorm "norm", fc2),
// and datasets of rows {"x", "labels"} for it.
#include <memory>
#include <utility>

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

/// A smooth regression problem for the MLP, drawn from the default
/// generator after manual_seed(seed): x ~ N(0, 1) of shape (n, 8) and labels
/// sin(x W) of shape (n, 4), W ~ N(0, 1) drawn after x.
inline std::pair<torch::Tensor, torch::Tensor> regression_data(int64_t n, uint64_t seed = 3) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 8});
  return {x, torch::sin(x.mm(torch::randn({8, 4})))};
}

/// Rows i of x and y as {"x": x[i], "labels": y[i]}.
inline std::shared_ptr<Dataset<TensorDict>> rows_dataset(torch::Tensor x, torch::Tensor y) {
  return std::make_shared<LambdaDataset<TensorDict>>(x.size(0), [x, y](int64_t i) {
    return TensorDict{{"x", x[i]}, {"labels", y[i]}};
  });
}

}  // namespace accel::testing
