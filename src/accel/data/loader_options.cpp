#include "accel/data/loader_options.h"

#include <stdexcept>
#include <string>

namespace accel {
namespace {
void fail(const std::string& what) { throw std::invalid_argument("DataLoaderOptions: " + what); }
}  // namespace

void DataLoaderOptions::validate(bool iterable) const {
  if (batch_size_ < 1) fail("batch_size " + std::to_string(batch_size_) + " must be >= 1");
  if (num_workers_ < 0) fail("num_workers " + std::to_string(num_workers_) + " must be >= 0");
  if (prefetch_factor_ < 1) fail("prefetch_factor " + std::to_string(prefetch_factor_) + " must be >= 1");
  if (persistent_workers_ && num_workers_ == 0) fail("persistent_workers needs num_workers > 0 (num_workers is 0)");
  if (sampler_ && shuffle_) fail("sampler and shuffle=true exclude each other; expected one of them");
  if (batch_sampler_) {
    if (batch_size_ != 1 || shuffle_ || sampler_ || drop_last_)
      fail("batch_sampler excludes batch_size (" + std::to_string(batch_size_) + "), shuffle, sampler and " +
           "drop_last; expected them at their defaults");
  }
  if (iterable && (shuffle_ || sampler_ || batch_sampler_))
    fail("an iterable dataset has its own order: expected no shuffle, sampler or batch_sampler");
}

}  // namespace accel
