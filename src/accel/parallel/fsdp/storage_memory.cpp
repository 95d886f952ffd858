#include "accel/parallel/fsdp/storage_memory.h"

#include <c10/core/StorageImpl.h>

namespace accel::fsdp {

void allocate_storage(const torch::Tensor& t, size_t nbytes) {
  auto* storage = t.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(storage->allocator()->allocate(nbytes));
  storage->set_nbytes(nbytes);
}

void free_storage(const torch::Tensor& t) {
  auto* storage = t.storage().unsafeGetStorageImpl();
  storage->set_data_ptr_noswap(c10::DataPtr(nullptr, storage->device()));
  storage->set_nbytes(0);
}

}  // namespace accel::fsdp
