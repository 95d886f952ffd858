#pragma once
// Host tensors for data that moves to and from a GPU on every step (the
// offloaded shards of parameter sharding): page-locked when asked and a
// GPU is present, so that copies run asynchronously at full bus speed.
//
// LibTorch's pinned allocator caches blocks rounded up to a power of two,
// which would waste up to half the host memory an offloaded model is
// bounded by; these are allocated at their exact size and registered with
// the CUDA driver instead, and unregistered when the tensor dies.
#include <cstdint>

#include <torch/types.h>

namespace accel {

/// An uninitialised contiguous CPU tensor of `numel` elements of `dtype`,
/// page-locked when `pin` and CUDA is available (plain memory otherwise).
/// Throws std::runtime_error naming the size when the memory cannot be had.
torch::Tensor host_empty(int64_t numel, torch::ScalarType dtype, bool pin);

}  // namespace accel
