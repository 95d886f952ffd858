#pragma once
// BatchSamplerShard: one rank's part of a batch sampler, exactly as
// Accelerate's (data_loader.py) so that the same job run by accel and by
// Accelerate feeds every rank the same samples.
//
// Without split_batches, whole batches go round-robin: batch i belongs to
// rank i % num_processes. A round is yielded only once it is complete and
// its last batch is full. What happens to an incomplete last round:
//   - drop_last (of the wrapped sampler): it is dropped;
//   - even_batches: it is completed with indices taken from the start of
//     the epoch (the first num_processes batches, repeated if too short),
//     so every rank gets the same number of full batches;
//   - neither: each rank with a batch left gets it, short or not.
// With split_batches, every batch is cut into num_processes equal slices
// (batch_size must be a multiple); a short last batch is completed from the
// first batch under even_batches, dropped under drop_last, else sliced as
// far as it goes.
//
// 22 samples, batch 3, 2 ranks, even_batches:
//   rank 0 [0,1,2] [6,7,8] [12,13,14] [18,19,20]
//   rank 1 [3,4,5] [9,10,11] [15,16,17] [21,0,1]
#include <memory>

#include "accel/data/batch_sampler.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API BatchSamplerShard : public BatchSamplerBase {
 public:
  BatchSamplerShard(std::shared_ptr<BatchSamplerBase> batch_sampler, int num_processes = 1, int process_index = 0,
                    bool split_batches = false, bool even_batches = true);

  /// Accelerate's __len__ (with split_batches and even_batches off, it
  /// counts a last partial batch even on ranks that do not receive it).
  int64_t size() const override;
  IndexBatches batches(int64_t epoch) const override;
  std::optional<int64_t> batch_size() const override { return inner_->batch_size(); }
  bool drop_last() const override { return inner_->drop_last(); }
  std::shared_ptr<Sampler> sampler() const override { return inner_->sampler(); }

  const std::shared_ptr<BatchSamplerBase>& inner() const { return inner_; }
  int num_processes() const { return num_processes_; }
  int process_index() const { return process_index_; }
  bool split_batches() const { return split_batches_; }
  bool even_batches() const { return even_batches_; }

 private:
  IndexBatches split(const IndexBatches& all) const;
  IndexBatches round_robin(const IndexBatches& all) const;

  std::shared_ptr<BatchSamplerBase> inner_;
  int num_processes_;
  int process_index_;
  bool split_batches_;
  bool even_batches_;
};

}  // namespace accel
