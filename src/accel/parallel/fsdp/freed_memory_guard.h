#pragma once
// FreedMemoryGuard: what a sharded unit's freed CPU buffer points at.
//
// Outside its forward and backward a unit's parameters keep their shapes
// but their storage has no memory (storage_memory.h). A null data pointer
// would make any read of them (printing a weight, p.clone()) a bare
// segmentation fault. Instead the storage points at a range of addresses
// reserved with no access (address space only: no memory, no swap); a
// read or write there still faults, and a SIGSEGV handler recognises the
// range, writes which unit was read and how to read a sharded model, then
// lets the default action end the process (a launcher names the rank). A
// fault anywhere else is handed to the handler installed before, unchanged.
//
// CUDA buffers are not guarded (a device kernel reading null fails with
// CUDA's illegal-address error).
#include <cstddef>
#include <string>

namespace accel::fsdp {

class FreedMemoryGuard {
 public:
  /// Reserves `nbytes` of addresses for the buffer of `what` (named in the
  /// message). Without room in the handler's table (16,384 guards alive at
  /// once) or without address space, address() is null: the old crash.
  FreedMemoryGuard(size_t nbytes, std::string what);
  ~FreedMemoryGuard();
  FreedMemoryGuard(const FreedMemoryGuard&) = delete;
  FreedMemoryGuard& operator=(const FreedMemoryGuard&) = delete;

  void* address() const { return base_; }

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
  long slot_ = -1;
  std::string message_;  // written by the handler: kept alive here
};

}  // namespace accel::fsdp
