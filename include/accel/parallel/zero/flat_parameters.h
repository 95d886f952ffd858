#pragma once
// FlatParameters: the model's parameters of each optimizer param group
// moved into one flat buffer per group (FlatLayout's order and padding),
// each parameter becoming a view of its range. The parameters keep their
// identity (module fields, optimizer lists and user references still name
// them; only their storage moved), so the module runs unchanged, and
// writing a whole group is one copy or one all-gather into the buffer.
#include <torch/types.h>

#include <vector>

#include "accel/parallel/zero/flat_layout.h"
#include "accel/util/export.h"

namespace accel::zero {

class ACCEL_API FlatParameters {
 public:
  /// params[g][i] is layout.groups[g].params[i]. A group's parameters must
  /// share one dtype and device (std::invalid_argument naming the first that
  /// does not); the padding is zero.
  FlatParameters(const FlatLayout& layout, std::vector<std::vector<torch::Tensor>> params);

  size_t num_groups() const { return buffers_.size(); }
  /// The flat buffer of group `g` (padded_numel elements, the parameters' dtype).
  const torch::Tensor& buffer(size_t g) const { return buffers_.at(g); }
  const std::vector<torch::Tensor>& params(size_t g) const { return params_.at(g); }

 private:
  std::vector<torch::Tensor> buffers_;
  std::vector<std::vector<torch::Tensor>> params_;
};

}  // namespace accel::zero
