#pragma once
// Batch samplers: one epoch as a list of batches of indices.
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "accel/data/sampler.h"
#include "accel/util/export.h"

namespace accel {

using IndexBatches = std::vector<Indices>;

class ACCEL_API BatchSamplerBase {
 public:
  virtual ~BatchSamplerBase() = default;
  /// Number of batches per epoch (for a shard: as Accelerate's __len__).
  virtual int64_t size() const = 0;
  virtual IndexBatches batches(int64_t epoch) const = 0;
  /// The size of full batches; none for samplers whose batches vary.
  virtual std::optional<int64_t> batch_size() const { return std::nullopt; }
  virtual bool drop_last() const { return false; }
  /// The underlying index sampler, if any (the loader re-seeds it on resume).
  virtual std::shared_ptr<Sampler> sampler() const { return nullptr; }
};

/// Groups a sampler's indices into batches of batch_size; the last one is
/// shorter unless drop_last drops it (PyTorch's BatchSampler).
class ACCEL_API BatchSampler : public BatchSamplerBase {
 public:
  BatchSampler(std::shared_ptr<Sampler> sampler, int64_t batch_size, bool drop_last);
  int64_t size() const override;
  IndexBatches batches(int64_t epoch) const override;
  std::optional<int64_t> batch_size() const override { return batch_size_; }
  bool drop_last() const override { return drop_last_; }
  std::shared_ptr<Sampler> sampler() const override { return sampler_; }

 private:
  std::shared_ptr<Sampler> sampler_;
  int64_t batch_size_;
  bool drop_last_;
};

}  // namespace accel
