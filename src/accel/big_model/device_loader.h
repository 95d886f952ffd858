#pragma once
// Reads checkpoint tensors into their destinations with several reads in
// flight. A few reader threads take the tensors' bytes in chunks of
// kLoadChunkBytes, in file order, each read with pread on a descriptor of
// the loader's own (no mapping touched, so the page cache is the only
// copy the kernel keeps):
//   - a CPU destination of the file's dtype is read into directly;
//   - a CPU destination of another dtype through one scratch chunk per
//     thread, converted on the way;
//   - a CUDA destination through two pinned staging chunks per thread:
//     while one chunk's copy to the device runs on a side stream (and its
//     dtype conversion, on the device), the thread reads the next chunk into
//     the other.
// Host memory beyond the destinations: at most 2 x threads x
// kLoadChunkBytes. Internal to big_model.
#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "accel/checkpoint/safetensors.h"

namespace accel::big_model {

inline constexpr int64_t kLoadChunkBytes = int64_t{8} << 20;

/// One tensor to read: `info` of `file` into `dst`, a contiguous tensor of
/// the info's shape on the CPU or a CUDA device, in any dtype.
struct LoadItem {
  const safetensors::File* file = nullptr;
  const safetensors::TensorInfo* info = nullptr;
  torch::Tensor dst;
};

/// Fills every item's `dst` with `threads` readers (>= 1). On return the
/// CPU destinations hold their values, and each CUDA device's current
/// stream waits for the copies before anything queued after this call.
/// Throws std::runtime_error naming the file and tensor a read failed on.
void load_tensors(const std::vector<LoadItem>& items, int threads);

}  // namespace accel::big_model
