#pragma once
// find_executable_batch_size: Accelerate's decorator of that name as a
// function. Calls fn(batch_size) starting at `starting_batch_size`; when it
// fails for lack of memory (should_reduce_batch_size) the device cache is
// emptied and fn is called again with int(batch_size * 0.9), or with what
// `reduce` returns; the first result that comes back is returned. At 0 it
// gives up with std::runtime_error. Other exceptions pass through.
//
//   accel::find_executable_batch_size([&](int64_t batch_size) {
//     auto loader = acc.prepare(make_loader(batch_size));
//     train(loader);
//   }, 128);
#include <cstdint>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>

#include "accel/util/check.h"
#include "accel/util/export.h"

namespace accel {

/// Out of memory on a device (CUDA's c10::OutOfMemoryError, "... out of
/// memory."), of CPU memory ("DefaultCPUAllocator: can't allocate memory"),
/// or cuDNN's CUDNN_STATUS_NOT_SUPPORTED: Accelerate's list.
ACCEL_API bool should_reduce_batch_size(const std::exception& error);

/// Releases cached device memory (CUDA's caching allocator), if any.
ACCEL_API void clear_device_cache();

template <class F>
auto find_executable_batch_size(F&& fn, int64_t starting_batch_size = 128,
                                std::function<int64_t(int64_t)> reduce = {}) {
  ACCEL_CHECK_ARG(starting_batch_size >= 1, "find_executable_batch_size: starting_batch_size is ", starting_batch_size,
                  ", expected >= 1");
  int64_t batch_size = starting_batch_size;
  clear_device_cache();
  while (true) {
    ACCEL_CHECK(batch_size > 0, "No executable batch size found, reached zero.");
    try {
      return fn(batch_size);
    } catch (const std::exception& e) {
      if (!should_reduce_batch_size(e)) throw;
    }
    clear_device_cache();
    batch_size = reduce ? reduce(batch_size) : static_cast<int64_t>(static_cast<double>(batch_size) * 0.9);
  }
}

}  // namespace accel
