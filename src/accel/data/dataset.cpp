#include "accel/data/dataset.h"

#include <torch/torch.h>

namespace accel {

TensorDataset::TensorDataset(TensorDict columns) : columns_(std::move(columns)) {
  bool first = true;
  for (const auto& [name, t] : columns_) {
    if (t.dim() == 0)
      throw std::invalid_argument("TensorDataset: column '" + name + "' is 0-d, expected a first dimension of rows");
    if (first) size_ = t.size(0);
    if (t.size(0) != size_)
      throw std::invalid_argument("TensorDataset: column '" + name + "' has " + std::to_string(t.size(0)) +
                                  " rows, expected " + std::to_string(size_) + " like the others");
    first = false;
  }
}

TensorDict TensorDataset::get(int64_t index) const {
  if (index < 0 || index >= size_)
    throw std::out_of_range("TensorDataset: index " + std::to_string(index) + " is not in [0, " +
                            std::to_string(size_) + ")");
  TensorDict out;
  for (const auto& [name, t] : columns_) out.emplace(name, t[index]);
  return out;
}

}  // namespace accel
