#include "accel/data/dataset.h"

#include <torch/torch.h>

#include "accel/util/check.h"

namespace accel {

TensorDataset::TensorDataset(TensorDict columns) : columns_(std::move(columns)) {
  bool first = true;
  for (const auto& [name, t] : columns_) {
    ACCEL_CHECK_ARG(t.dim() != 0, "TensorDataset: column '", name, "' is 0-d, expected a first dimension of rows");
    if (first) size_ = t.size(0);
    ACCEL_CHECK_ARG(t.size(0) == size_, "TensorDataset: column '", name, "' has ", t.size(0), " rows, expected ", size_,
                    " like the others");
    first = false;
  }
}

TensorDict TensorDataset::get(int64_t index) const {
  if (index < 0 || index >= size_)
    fail<std::out_of_range>("TensorDataset: index ", index, " is not in [0, ", size_, ")");
  TensorDict out;
  for (const auto& [name, t] : columns_) out.emplace(name, t[index]);
  return out;
}

}  // namespace accel
