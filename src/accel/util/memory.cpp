#include "accel/util/memory.h"

#include <c10/util/Exception.h>
#include <torch/cuda.h>

#ifdef ACCEL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace accel {

bool should_reduce_batch_size(const std::exception& error) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&error)) return true;
  // Accelerate matches these texts in the message.
  static const char* const statements[] = {
      " out of memory.",
      "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.",
      "DefaultCPUAllocator: can't allocate memory",
  };
  const std::string what = error.what();
  for (const char* s : statements)
    if (what.find(s) != std::string::npos) return true;
  return false;
}

void clear_device_cache() {
#ifdef ACCEL_WITH_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

}  // namespace accel
