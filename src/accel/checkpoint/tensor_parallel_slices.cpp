#include "accel/checkpoint/tensor_parallel_slices.h"

#include <algorithm>

#include "accel/parallel/tensor/parallelize.h"
#include "accel/util/check.h"

namespace accel {
namespace {

// A box of a row-major tensor: `offset` and `size` per dimension, and
// where its first element sits among the flattened tensor's.
struct Rect {
  std::vector<int64_t> offset, size;
  int64_t flat = 0;
};

// The flat range [begin, end) of a tensor of `shape` as boxes, in flat
// order, each box one contiguous run of that range: at each dimension a
// partial leading row, the whole rows, a partial trailing row.
void flat_range_rects(const std::vector<int64_t>& shape, size_t d, int64_t begin, int64_t end, Rect prefix,
                      std::vector<Rect>& out) {
  if (begin >= end) return;
  if (d == shape.size()) {  // a single element (a 0-d tensor)
    out.push_back(std::move(prefix));
    return;
  }
  int64_t inner = 1;  // elements per index of dimension d
  for (size_t k = d + 1; k < shape.size(); ++k) inner *= shape[k];
  auto row = [&](int64_t i, int64_t b, int64_t e) {  // part of index i of dimension d
    Rect r = prefix;
    r.offset.push_back(i);
    r.size.push_back(1);
    r.flat += i * inner;
    flat_range_rects(shape, d + 1, b, e, std::move(r), out);
  };
  int64_t first = begin / inner;
  const int64_t last = (end - 1) / inner;
  if (first == last) return row(first, begin - first * inner, end - first * inner);
  if (begin % inner != 0) row(first++, begin % inner, inner);
  const int64_t full_end = end % inner == 0 ? last + 1 : last;
  if (full_end > first) {
    Rect r = prefix;
    r.offset.push_back(first);
    r.size.push_back(full_end - first);
    r.flat += first * inner;
    for (size_t k = d + 1; k < shape.size(); ++k) {
      r.offset.push_back(0);
      r.size.push_back(shape[k]);
    }
    out.push_back(std::move(r));
  }
  if (end % inner != 0) row(last, 0, end % inner);
}

}  // namespace

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

void append_piece_slices(std::vector<Slice>& out, const std::string& key, const std::string& whole,
                         const torch::Tensor& piece, const torch::Tensor& parameter, int64_t begin,
                         torch::ScalarType dtype, bool replicated) {
  const auto flat = piece.detach().reshape({-1});
  const auto placement = tensor_parallel_placement(parameter);
  if (!placement) {
    if (replicated) out.push_back(Slice{key, flat, whole, parameter.sizes().vec(), dtype, begin, {}});
    return;
  }
  ACCEL_CHECK_ARG(begin >= 0 && begin + flat.numel() <= parameter.numel(), "append_piece_slices: a piece [", begin,
                  ", ", begin + flat.numel(), ") of '", whole, "', whose slice has ", parameter.numel(), " elements");
  const auto local = parameter.sizes().vec();
  const auto dim = static_cast<size_t>(placement->dim);
  std::vector<Rect> rects;
  flat_range_rects(local, 0, begin, begin + flat.numel(), Rect{}, rects);
  int n = 0;
  for (const auto& rect : rects) {
    int64_t numel = 1;
    for (auto s : rect.size) numel *= s;
    const auto data = flat.narrow(0, rect.flat - begin, numel).view(rect.size);
    // The slice is its boxes side by side along `dim`: each box takes its
    // share of the rect, moved to where that box sits in the whole.
    int64_t box_start = 0;  // along dim, in the slice
    for (const auto& box : placement->boxes) {
      const int64_t box_end = box_start + box.size[dim];
      const int64_t lo = std::max(box_start, rect.offset[dim]);
      const int64_t hi = std::min(box_end, rect.offset[dim] + rect.size[dim]);
      if (lo < hi) {
        auto offset = rect.offset;
        offset[dim] = box.offset[dim] + (lo - box_start);
        for (size_t k = 0; k < offset.size(); ++k)
          if (k != dim) offset[k] += box.offset[k];
        out.push_back(Slice{n == 0 ? key : key + ":" + std::to_string(n),
                            data.narrow(static_cast<int64_t>(dim), lo - rect.offset[dim], hi - lo), whole,
                            placement->whole_shape, dtype, 0, offset});
        ++n;
      }
      box_start = box_end;
    }
  }
}

torch::Tensor read_piece(const SliceSet& slices, const std::string& whole, const torch::Tensor& parameter,
                         int64_t begin, int64_t numel, torch::ScalarType dtype) {
  const auto placement = tensor_parallel_placement(parameter);
  if (!placement) return slices.read(whole, begin, numel, dtype);
  std::vector<torch::Tensor> boxes;
  for (const auto& box : placement->boxes) boxes.push_back(slices.read_block(whole, box.offset, box.size, dtype));
  return torch::cat(boxes, placement->dim).reshape({-1}).narrow(0, begin, numel).clone();
}

std::vector<int64_t> whole_shape_of(const torch::Tensor& parameter) {
  const auto placement = tensor_parallel_placement(parameter);
  return placement ? placement->whole_shape : parameter.sizes().vec();
}

torch::Tensor local_part_of(const torch::Tensor& parameter, const torch::Tensor& whole) {
  const auto placement = tensor_parallel_placement(parameter);
  if (!placement || whole.sizes().vec() != placement->whole_shape) return whole;
  return tensor_parallel_slice_of(parameter, whole);
}

}  // namespace accel
