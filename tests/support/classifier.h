#pragma once
// The small classification problem the training tests share: 6 features,
// 3 classes, samples that every process draws alike, a loader over them and
// a net of a few layers.
//
//   using Net = classifier::Net<{.branch = true}>;
//   auto data = classifier::loader(48, 4);  // 48 samples, 4 rows a batch
#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "accel/data/data_loader.h"

namespace accel::testing::classifier {

constexpr int64_t kFeatures = 6, kHidden = 16, kClasses = 3;

/// The features of `n` samples (generator 11): the same in every process.
inline torch::Tensor features(int64_t n) { return torch::randn({n, kFeatures}, at::detail::createCPUGenerator(11)); }
/// The labels of `n` samples (generator 12).
inline torch::Tensor labels(int64_t n) { return torch::randint(0, kClasses, {n}, at::detail::createCPUGenerator(12)); }

/// A loader over `n` samples as {"x": features, "y": labels}, `batch` rows a
/// batch, in order.
inline DataLoader<TensorDict> loader(int64_t n, int64_t batch) {
  return make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"x", features(n)}, {"y", labels(n)}}),
                          DataLoaderOptions(batch));
}

/// The layers a Net has besides fc1 and head.
struct Layers {
  bool fc2 = false;     // a second hidden layer
  bool branch = false;  // a residual branch a forward can leave idle (unused parameters)
};

/// fc1 -> tanh [-> fc2 -> tanh] [-> + tanh(branch)] -> head. The layers are
/// registered, and so initialised from the generator, in that order.
template <Layers L = Layers{}>
struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(kFeatures, kHidden));
    if constexpr (L.fc2) fc2 = register_module("fc2", torch::nn::Linear(kHidden, kHidden));
    if constexpr (L.branch) branch = register_module("branch", torch::nn::Linear(kHidden, kHidden));
    head = register_module("head", torch::nn::Linear(kHidden, kClasses));
  }
  /// `use_branch` false: the branch takes no part in this forward.
  torch::Tensor forward(torch::Tensor x, bool use_branch = true) {
    x = torch::tanh(fc1(x));
    if constexpr (L.fc2) x = torch::tanh(fc2(x));
    if constexpr (L.branch)
      if (use_branch) x = x + torch::tanh(branch(x));
    return head(x);
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, branch{nullptr}, head{nullptr};
};

template <Layers L = Layers{}>
using Net = torch::nn::ModuleHolder<NetImpl<L>>;

}  // namespace accel::testing::classifier
