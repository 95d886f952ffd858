#pragma once
// LengthGroupedSampler: Transformers' sampler for group_by_length
// (trainer_pt_utils.py). Each epoch's order groups examples of similar
// length, so batches need little padding, while keeping randomness:
//
//   - the indices are permuted (torch::randperm from a CPU generator),
//   - cut into megabatches of mega_batch_mult * batch_size,
//   - each megabatch sorted by length, longest first (stable: ties keep
//     the permutation's order),
//   - and the longest example of all swapped to the very front, so that a
//     batch that does not fit in memory fails on the first step.
//
// mega_batch_mult defaults to min(n / (4 * batch_size), 50), at least 1.
//
//   auto sampler = std::make_shared<accel::LengthGroupedSampler>(lengths, /*batch_size=*/32, /*seed=*/42);
//   auto loader = accel::make_data_loader(ds, accel::DataLoaderOptions(8).sampler(sampler));
//
// Transformers draws the permutation from torch's global generator (or,
// distributed, from one Accelerate seeds from it); here it is drawn from a
// generator seeded with seed + epoch, as Accelerate's SeedableRandomSampler
// does, so the order is the same on every rank and after a resume. Given
// the same generator state the indices equal Transformers' bit for bit
// (ATen's CPU generator is the same engine in C++ and Python).
#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/core/Generator.h>

#include "accel/data/sampler.h"
#include "accel/util/export.h"

namespace accel {

/// Transformers' get_length_grouped_indices: `lengths[i]` is example i's
/// length; the permutation comes from `generator` (a CPU generator).
/// Throws std::invalid_argument for batch_size or mega_batch_mult < 1.
ACCEL_API Indices get_length_grouped_indices(const std::vector<int64_t>& lengths, int64_t batch_size,
                                             std::optional<int64_t> mega_batch_mult, at::Generator generator);

class ACCEL_API LengthGroupedSampler : public Sampler {
 public:
  /// `reshuffle_each_epoch` false: every epoch uses `seed` itself (what
  /// Transformers' evaluation sampler does: the same order at each
  /// evaluation).
  LengthGroupedSampler(std::vector<int64_t> lengths, int64_t batch_size, uint64_t seed,
                       bool reshuffle_each_epoch = true);
  int64_t size() const override { return static_cast<int64_t>(lengths_.size()); }
  Indices indices(int64_t epoch) const override;
  std::optional<uint64_t> seed() const override { return seed_; }
  void set_seed(uint64_t seed) override { seed_ = seed; }
  int64_t batch_size() const { return batch_size_; }

 private:
  std::vector<int64_t> lengths_;
  int64_t batch_size_;
  uint64_t seed_;
  bool reshuffle_each_epoch_;
};

}  // namespace accel
