#include "accel/parallel/fsdp/storage_memory.h"

#include <c10/core/StorageImpl.h>

#include "accel/parallel/fsdp/freed_memory_guard.h"

namespace accel::fsdp {

void allocate_storage(const torch::Tensor& t, size_t nbytes) {
  auto* storage = t.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(storage->allocator()->allocate(nbytes));
  storage->set_nbytes(nbytes);
}

void free_storage(const torch::Tensor& t, const FreedMemoryGuard* guard) {
  auto* storage = t.storage().unsafeGetStorageImpl();
  void* at = guard && storage->device().is_cpu() ? guard->address() : nullptr;
  storage->set_data_ptr_noswap(c10::DataPtr(at, storage->device()));  // not owned: nothing to release
  storage->set_nbytes(0);
}

}  // namespace accel::fsdp
