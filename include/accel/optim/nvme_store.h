#pragma once
// NvmeStore: tensors paged to files under one folder with asynchronous I/O,
// the swap space of NVMe optimizer offload (DeepSpeed's "swap" folder).
// write(key, tensor) and read(key, into) return at once with a handle to
// wait on; a pool of I/O threads does the pwrite/pread calls, a large tensor
// cut into pieces that several threads move at the same time (an NVMe
// drive wants several requests in flight to reach its bandwidth).
//
//   accel::NvmeStore store(accel::NvmeStoreOptions("/local_nvme/accel_swap"));
//   auto w = store.write("exp_avg.0", chunk);   // chunk must stay alive and unchanged
//   ...                                          // until w.wait() returns
//   w.wait();
//   store.read("exp_avg.0", pinned_buffer).wait();
//
// Each key is one file, <folder>/<key>.swp, written whole by each write.
// Swap files are scratch: the folder is made if missing, and the files this
// store wrote are removed when it is destroyed (no temporary names: a file
// half written by a crash is never read back, since it belongs to no store).
// Errors (folder not writable, a short read, a missing key, a disk full)
// are std::runtime_error naming the path and the errno text, thrown from
// wait() for the asynchronous part.
//
// O_DIRECT (direct_io) bypasses the page cache so that paging does not
// evict the rest of the process's memory; it needs 4096-byte aligned buffers
// and sizes, and a file system that supports it: a request that does not
// qualify is done through the page cache instead.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <torch/arg.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API NvmeStoreOptions {
  NvmeStoreOptions(std::filesystem::path folder) : folder_(std::move(folder)) {}  // NOLINT
  /// Where the swap files go (made if missing).
  TORCH_ARG(std::filesystem::path, folder);
  /// I/O threads. >= 1.
  TORCH_ARG(int, io_threads) = 4;
  /// Bytes per pread/pwrite call; the pieces of one tensor go to several threads. >= 4096.
  TORCH_ARG(int64_t, block_bytes) = 8 << 20;
  /// Open with O_DIRECT where the buffer, size and file system allow it.
  TORCH_ARG(bool, direct_io) = false;
};

namespace detail {
struct IoRequest;
class IoPool;
}  // namespace detail

/// A pending read or write. wait() blocks until it is done and rethrows its
/// error; a default-constructed handle is already done.
class ACCEL_API IoHandle {
 public:
  IoHandle() = default;
  void wait() const;
  bool done() const;

 private:
  friend class NvmeStore;
  explicit IoHandle(std::shared_ptr<detail::IoRequest> request) : request_(std::move(request)) {}
  std::shared_ptr<detail::IoRequest> request_;
};

class ACCEL_API NvmeStore {
 public:
  /// Makes the folder and checks that a file can be written in it; throws
  /// std::runtime_error naming the folder and the errno text otherwise, or
  /// std::invalid_argument for bad options.
  explicit NvmeStore(NvmeStoreOptions options);
  /// Waits for pending I/O, then removes the files this store wrote.
  ~NvmeStore();
  NvmeStore(const NvmeStore&) = delete;
  NvmeStore& operator=(const NvmeStore&) = delete;

  /// Writes the bytes of `tensor` (contiguous, on the CPU) to the key's file,
  /// replacing what was there. The tensor is held until done; do not change it
  /// before wait().
  IoHandle write(const std::string& key, const torch::Tensor& tensor);
  /// Reads the key's file into `into` (contiguous, on the CPU, exactly the
  /// file's size; pinned memory for a later non_blocking copy to a GPU).
  IoHandle read(const std::string& key, const torch::Tensor& into);

  /// The file of a key. Keys are made of letters, digits, '.', '_' and '-'.
  std::filesystem::path path_of(const std::string& key) const;
  /// Whether a write to the key has been issued.
  bool contains(const std::string& key) const;
  const NvmeStoreOptions& options() const { return options_; }

 private:
  IoHandle submit(const std::string& key, const torch::Tensor& tensor, bool write);

  NvmeStoreOptions options_;
  std::unique_ptr<detail::IoPool> pool_;
  mutable std::mutex mutex_;
  std::set<std::string> keys_;
};

}  // namespace accel
