#pragma once
// Collation: a list of examples becomes one batch.
//
// default_collate stacks tensors along a new first dimension, dict by dict
// key, and turns numbers into a 1-d tensor (PyTorch's default_collate for
// the types C++ code uses). Any other example type needs a collate function
// given to make_data_loader: std::function<Batch(std::vector<Example>)>.
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "accel/data/dataset.h"
#include "accel/util/export.h"

namespace accel {

template <class Example, class Batch>
using CollateFn = std::function<Batch(std::vector<Example>)>;

/// Stacks equal-shaped tensors: [n, ...].
ACCEL_API torch::Tensor default_collate(std::vector<torch::Tensor> examples);
/// Stacks each key; every example must have the same keys.
ACCEL_API TensorDict default_collate(std::vector<TensorDict> examples);
/// Numbers become a 1-d tensor (int64 / float64).
ACCEL_API torch::Tensor default_collate(std::vector<int64_t> examples);
ACCEL_API torch::Tensor default_collate(std::vector<double> examples);

/// The batch type default_collate makes from `Example`.
template <class Example>
using DefaultBatch = decltype(default_collate(std::declval<std::vector<Example>>()));

template <class Example>
concept DefaultCollatable = requires(std::vector<Example> v) {
  default_collate(std::move(v));
};

}  // namespace accel
