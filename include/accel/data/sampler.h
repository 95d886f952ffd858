#pragma once
// Samplers: the order in which a map-style dataset is read in one epoch.
//
// A sampler is a pure function of the epoch (indices(epoch) returns the
// same list every time it is asked), which is what makes a loader
// resumable: the position within an epoch is then enough to continue.
#include <cstdint>
#include <optional>
#include <vector>

#include "accel/util/export.h"

namespace accel {

using Indices = std::vector<int64_t>;

class ACCEL_API Sampler {
 public:
  virtual ~Sampler() = default;
  /// Number of indices per epoch.
  virtual int64_t size() const = 0;
  virtual Indices indices(int64_t epoch) const = 0;
  /// The seed of a random sampler (saved in the loader state); none for
  /// deterministic ones.
  virtual std::optional<uint64_t> seed() const { return std::nullopt; }
  virtual void set_seed(uint64_t) {}
};

/// 0, 1, ..., n-1.
class ACCEL_API SequentialSampler : public Sampler {
 public:
  explicit SequentialSampler(int64_t n);
  int64_t size() const override { return n_; }
  Indices indices(int64_t epoch) const override;

 private:
  int64_t n_;
};

/// Accelerate's SeedableRandomSampler: epoch e is
/// torch.randperm(n, generator=manual_seed(seed + e)), the same on every
/// rank and in Python (both use ATen's CPU generator, mt19937).
class ACCEL_API SeedableRandomSampler : public Sampler {
 public:
  SeedableRandomSampler(int64_t n, uint64_t seed);
  int64_t size() const override { return n_; }
  Indices indices(int64_t epoch) const override;
  std::optional<uint64_t> seed() const override { return seed_; }
  void set_seed(uint64_t seed) override { seed_ = seed; }

  /// Accelerate's sampler also carries the epoch; indices() without an
  /// argument uses it. The loader passes its own epoch instead.
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }
  Indices indices() const { return indices(epoch_); }

 private:
  int64_t n_;
  uint64_t seed_;
  int64_t epoch_ = 0;
};

/// torch::randperm(n) from a CPU generator seeded with `seed`.
ACCEL_API Indices seeded_permutation(int64_t n, uint64_t seed);

/// The seed torch's default CPU generator was last seeded with
/// (torch.initial_seed(): what Accelerate uses when no data_seed is given).
ACCEL_API uint64_t default_initial_seed();

}  // namespace accel
