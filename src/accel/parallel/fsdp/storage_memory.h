#pragma once
// Gives a tensor's storage memory, or takes it away, in place: every tensor
// viewing that storage (autograd's saved tensors included) keeps its shape
// and sees the new memory. FSDP's unsharded parameters live this way
// (Python's untyped_storage().resize_()).
#include <cstddef>

#include <torch/types.h>

namespace accel::fsdp {

class FreedMemoryGuard;  // freed_memory_guard.h

/// `t`'s storage gets `nbytes` of new (uninitialised) memory from its own allocator.
void allocate_storage(const torch::Tensor& t, size_t nbytes);
/// `t`'s storage lets its memory go (0 bytes). A CPU storage then points
/// at `guard`'s reserved addresses when given (a read names the buffer),
/// else at null.
void free_storage(const torch::Tensor& t, const FreedMemoryGuard* guard = nullptr);

}  // namespace accel::fsdp
