#include "accel/data/loader_options.h"

#include <stdexcept>
#include <string>

#include "accel/util/check.h"

namespace accel {

void DataLoaderOptions::validate(bool iterable) const {
  constexpr const char* who = "DataLoaderOptions: ";
  ACCEL_CHECK_ARG(batch_size_ >= 1, who, "batch_size ", batch_size_, " must be >= 1");
  ACCEL_CHECK_ARG(num_workers_ >= 0, who, "num_workers ", num_workers_, " must be >= 0");
  ACCEL_CHECK_ARG(prefetch_factor_ >= 1, who, "prefetch_factor ", prefetch_factor_, " must be >= 1");
  ACCEL_CHECK_ARG(!persistent_workers_ || num_workers_ != 0, who,
                  "persistent_workers needs num_workers > 0 (num_workers is 0)");
  ACCEL_CHECK_ARG(!(sampler_ && shuffle_), who, "sampler and shuffle=true exclude each other; expected one of them");
  if (batch_sampler_) {
    ACCEL_CHECK_ARG(batch_size_ == 1 && !shuffle_ && !sampler_ && !drop_last_, who,
                    "batch_sampler excludes batch_size (", batch_size_,
                    "), shuffle, sampler and drop_last; expected them at their defaults");
  }
  ACCEL_CHECK_ARG(!iterable || !(shuffle_ || sampler_ || batch_sampler_), who,
                  "an iterable dataset has its own order: expected no shuffle, sampler or batch_sampler");
}

}  // namespace accel
