#include "accel/data/batch_sampler.h"

#include <stdexcept>
#include <string>

#include "accel/util/check.h"

namespace accel {

BatchSampler::BatchSampler(std::shared_ptr<Sampler> sampler, int64_t batch_size, bool drop_last)
    : sampler_(std::move(sampler)), batch_size_(batch_size), drop_last_(drop_last) {
  ACCEL_CHECK_ARG(sampler_, "BatchSampler: the sampler is null, expected a sampler");
  ACCEL_CHECK_ARG(batch_size_ >= 1, "BatchSampler: batch_size ", batch_size_, " must be >= 1");
}

int64_t BatchSampler::size() const {
  const int64_t n = sampler_->size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

IndexBatches BatchSampler::batches(int64_t epoch) const {
  const Indices all = sampler_->indices(epoch);
  IndexBatches out;
  out.reserve(all.size() / batch_size_ + 1);
  for (size_t begin = 0; begin < all.size(); begin += batch_size_) {
    const size_t end = std::min(all.size(), begin + static_cast<size_t>(batch_size_));
    if (drop_last_ && end - begin < static_cast<size_t>(batch_size_)) break;
    out.emplace_back(all.begin() + begin, all.begin() + end);
  }
  return out;
}

}  // namespace accel
