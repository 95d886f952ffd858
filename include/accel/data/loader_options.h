#pragma once
// DataLoaderOptions: PyTorch's DataLoader arguments, LibTorch style:
//   accel::DataLoaderOptions().batch_size(32).shuffle(true).num_workers(2)
// The loader checks them when it is built (validate()) and names the bad
// value.
#include <cstdint>
#include <memory>
#include <optional>

#include <torch/arg.h>

#include "accel/data/batch_sampler.h"
#include "accel/data/sampler.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API DataLoaderOptions {
  DataLoaderOptions() = default;
  /* implicit */ DataLoaderOptions(int64_t batch_size) : batch_size_(batch_size) {}

  /// Examples per batch (>= 1).
  TORCH_ARG(int64_t, batch_size) = 1;
  /// Reshuffle every epoch: a SeedableRandomSampler from `seed` (or, unset,
  /// torch's initial seed, as Accelerate's data_seed=None).
  TORCH_ARG(bool, shuffle) = false;
  /// Drop the last batch when it is short.
  TORCH_ARG(bool, drop_last) = false;
  /// Threads that read and collate batches ahead of the consumer. Batches
  /// come out in the same order as with 0 (everything on the caller's thread).
  TORCH_ARG(int64_t, num_workers) = 0;
  /// Batches each worker may hold ready ahead of the consumer (>= 1).
  TORCH_ARG(int64_t, prefetch_factor) = 2;
  /// Collate into page-locked memory so device copies can be asynchronous
  /// (ignored without a CUDA driver, as PyTorch does).
  TORCH_ARG(bool, pin_memory) = false;
  /// Keep the worker threads between epochs (needs num_workers > 0).
  TORCH_ARG(bool, persistent_workers) = false;
  /// Seed of the shuffle.
  TORCH_ARG(std::optional<uint64_t>, seed) = std::nullopt;
  /// Order of the examples; excludes shuffle.
  TORCH_ARG(std::shared_ptr<Sampler>, sampler) = nullptr;
  /// Batches of indices; excludes batch_size, shuffle, sampler and drop_last.
  TORCH_ARG(std::shared_ptr<BatchSamplerBase>, batch_sampler) = nullptr;

  // (TORCH_ARG leaves the section private.)
 public:
  /// Throws std::invalid_argument naming the first bad or conflicting option.
  /// `iterable`: the options are for an iterable dataset (no sampler, no
  /// shuffle: the stream has its own order).
  void validate(bool iterable) const;
};

}  // namespace accel
