#pragma once
// StateFile: fp32 tensors whose memory is a file, mapped shared, so that
// optimizer state can live on an NVMe drive instead of in host memory
// (DeepSpeed ZeRO-3's offload_optimizer device "nvme").
//
// The tensors are ordinary CPU tensors to every reader: CPU Adam, the
// optimizer's state_dict, save_state and load_state use them unchanged.
// The kernel pages them: pages read on first touch (prefetch() starts the
// reads for a range ahead of use), dirty pages written back (write_back()
// starts that as soon as an update is done), and any page evicted when
// memory is short, since a file page has a home on disk. Host memory thus
// holds only what the kernel keeps as cache, and the file holds the whole.
//
// Blocks are reserved on disk when a tensor is allocated (posix_fallocate):
// a disk too small is an error then, naming the file, not a SIGBUS during a
// later step. The file is scratch: made at construction (the folder too),
// removed when the last tensor allocated from it is gone.
#include <cstdint>
#include <filesystem>
#include <memory>

#include <torch/types.h>

namespace accel::fsdp {

class StateFile {
 public:
  /// A new file `path` (std::runtime_error naming it when it exists or
  /// cannot be made) with room for `capacity` fp32 elements.
  static std::shared_ptr<StateFile> create(const std::filesystem::path& path, int64_t capacity);
  ~StateFile();
  StateFile(const StateFile&) = delete;
  StateFile& operator=(const StateFile&) = delete;

  /// `numel` zeros, the next free elements of the file, on disk blocks
  /// reserved now. The tensor keeps the mapping alive.
  torch::Tensor allocate(int64_t numel);
  /// Whether `t`'s data lies in this file.
  bool holds(const torch::Tensor& t) const;

  /// Starts reading every allocated page not in memory (returns at once).
  void prefetch() const;
  /// Starts writing every dirty page back to the drive (returns at once).
  void write_back() const;

  const std::filesystem::path& path() const { return path_; }
  /// Elements allocated so far.
  int64_t used() const { return used_; }

 private:
  StateFile(std::filesystem::path path, int fd, void* base, int64_t capacity);

  std::filesystem::path path_;
  int fd_;
  float* base_;
  int64_t capacity_;
  int64_t used_ = 0;
  std::weak_ptr<StateFile> self_;
};

}  // namespace accel::fsdp
