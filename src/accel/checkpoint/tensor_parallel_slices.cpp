#include "accel/checkpoint/tensor_parallel_slices.h"

#include "accel/parallel/tensor/parallelize.h"

namespace accel {

void append_tensor_slices(std::vector<Slice>& out, const std::string& whole, const torch::Tensor& value,
                          const torch::Tensor& parameter, bool replicated) {
  const auto t = value.detach();
  const auto placement = tensor_parallel_placement(parameter);
  if (!placement || t.sizes() != parameter.sizes()) {
    if (replicated) out.push_back(Slice{whole, t, whole, t.sizes().vec(), t.scalar_type(), 0, {}});
    return;
  }
  int64_t at = 0;  // along placement->dim of this rank's slice
  for (size_t b = 0; b < placement->boxes.size(); ++b) {
    const auto& box = placement->boxes[b];
    const int64_t len = box.size[static_cast<size_t>(placement->dim)];
    const std::string key = placement->boxes.size() == 1 ? whole : whole + ":" + std::to_string(b);
    out.push_back(
        Slice{key, t.narrow(placement->dim, at, len), whole, placement->whole_shape, t.scalar_type(), 0, box.offset});
    at += len;
  }
}

torch::Tensor local_part_of(const torch::Tensor& parameter, const torch::Tensor& whole) {
  const auto placement = tensor_parallel_placement(parameter);
  if (!placement || whole.sizes().vec() != placement->whole_shape) return whole;
  return tensor_parallel_slice_of(parameter, whole);
}

}  // namespace accel
