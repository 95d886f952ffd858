#pragma once
// What the loader needs to know about a batch type to move it to a device,
// pin it, and (with dispatch_batches) send it, cut it and join it: its
// tensors, in a fixed order, and how to rebuild it from them.
//
// Provided for torch::Tensor and TensorDict. For a type of your own,
// specialise BatchTraits with the same two functions; without them the
// loader still works, but batches stay where the collate function put them
// and dispatch_batches is refused.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "accel/data/dataset.h"
#include "accel/util/check.h"
#include "accel/util/export.h"

namespace accel {

template <class Batch>
struct BatchTraits {
  static constexpr bool has_tensors = false;
};

template <>
struct BatchTraits<torch::Tensor> {
  static constexpr bool has_tensors = true;
  static std::vector<torch::Tensor> tensors(const torch::Tensor& b) { return {b}; }
  /// `names` is empty for a plain tensor.
  static std::vector<std::string> names(const torch::Tensor&) { return {}; }
  static torch::Tensor rebuild(const std::vector<std::string>&, std::vector<torch::Tensor> ts) { return ts.at(0); }
};

template <>
struct ACCEL_API BatchTraits<TensorDict> {
  static constexpr bool has_tensors = true;
  static std::vector<torch::Tensor> tensors(const TensorDict& b);
  static std::vector<std::string> names(const TensorDict& b);
  static TensorDict rebuild(const std::vector<std::string>& names, std::vector<torch::Tensor> ts);
};

template <class Batch>
concept TensorBatch = BatchTraits<Batch>::has_tensors;

/// Applies `fn` to every tensor of the batch, keeping the structure.
template <TensorBatch Batch, class Fn>
Batch map_tensors(const Batch& batch, Fn&& fn) {
  using T = BatchTraits<Batch>;
  auto ts = T::tensors(batch);
  for (auto& t : ts) t = fn(t);
  return T::rebuild(T::names(batch), std::move(ts));
}

/// Size of the first dimension of the first tensor (every tensor of a batch
/// has it). -1 for a batch without tensors.
template <TensorBatch Batch>
int64_t batch_size_of(const Batch& batch) {
  auto ts = BatchTraits<Batch>::tensors(batch);
  return ts.empty() || ts[0].dim() == 0 ? -1 : ts[0].size(0);
}

/// Rows [begin, end) of every tensor, clamped to the batch (Python slicing).
template <TensorBatch Batch>
Batch slice_batch(const Batch& batch, int64_t begin, int64_t end) {
  return map_tensors(batch, [&](const torch::Tensor& t) {
    const int64_t n = t.size(0), b = std::min(begin, n), e = std::max(b, std::min(end, n));
    return t.slice(0, b, e);
  });
}

/// Joins batches of the same structure along the first dimension.
template <TensorBatch Batch>
Batch concat_batches(const std::vector<Batch>& batches) {
  using T = BatchTraits<Batch>;
  std::vector<std::vector<torch::Tensor>> columns;
  for (const auto& b : batches) {
    auto ts = T::tensors(b);
    if (columns.empty()) columns.resize(ts.size());
    ACCEL_CHECK_ARG(ts.size() == columns.size(), "concat_batches: a batch has ", ts.size(), " tensors, expected ",
                    columns.size());
    for (size_t i = 0; i < ts.size(); ++i) columns[i].push_back(ts[i]);
  }
  std::vector<torch::Tensor> out;
  for (auto& c : columns) out.push_back(torch::cat(c, 0));
  return T::rebuild(T::names(batches.at(0)), std::move(out));
}

/// Copies the batch to `device` (from pinned memory, non_blocking overlaps
/// the copy with compute). A batch type without traits is returned as is.
template <class Batch>
Batch batch_to_device(Batch batch, const torch::Device& device, bool non_blocking) {
  if constexpr (TensorBatch<Batch>) {
    return map_tensors(batch, [&](const torch::Tensor& t) { return t.to(device, non_blocking); });
  } else {
    return batch;
  }
}

/// Whether page-locked host memory can be had (it needs a CUDA driver).
ACCEL_API bool pinned_memory_available();

/// Copies the batch's CPU tensors into page-locked memory (when available).
template <class Batch>
Batch pin_batch(Batch batch) {
  if constexpr (TensorBatch<Batch>) {
    if (!pinned_memory_available()) return batch;
    return map_tensors(batch, [](const torch::Tensor& t) { return t.is_cpu() ? t.pin_memory() : t; });
  } else {
    return batch;
  }
}

/// The shapes and dtypes of a batch as a string, so other ranks can
/// allocate the tensors a broadcast will fill (DataLoaderDispatcher).
ACCEL_API std::string describe_tensors(const std::vector<std::string>& names,
                                       const std::vector<torch::Tensor>& tensors);
/// Empty tensors on `device` from describe_tensors' string; fills `names`.
ACCEL_API std::vector<torch::Tensor> allocate_described(const std::string& description, const torch::Device& device,
                                                        std::vector<std::string>& names);

}  // namespace accel
