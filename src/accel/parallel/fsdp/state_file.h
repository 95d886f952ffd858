#pragma once
// StateFile: tensors whose memory is a file, mapped shared, so that
// optimizer state (DeepSpeed ZeRO-3's offload_optimizer device "nvme") and
// parameter shards (offload_param device "nvme") can live on an NVMe drive
// instead of in host memory.
//
// The tensors are ordinary CPU tensors to every reader: CPU Adam, the
// optimizer's state_dict, the gathers, save_state and load_state use them
// unchanged. The kernel pages them: pages read on first touch (prefetch()
// starts the reads ahead of use), dirty pages written back (write_back()
// starts that as soon as an update is done), and any page evicted when
// memory is short, since a file page has a home on disk. Host memory thus
// holds only what the kernel keeps as cache, and the file holds the whole.
//
// Blocks are reserved on disk when a tensor is allocated (posix_fallocate):
// a disk too small is an error then, naming the file, not a SIGBUS during a
// later step. The file is scratch: made at construction (O_EXCL, under a
// name no other process gives, so that no run ever opens a file another
// one, perhaps crashed, left half written), removed when the last tensor
// allocated from it is gone.
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <torch/types.h>

namespace accel::fsdp {

/// A folder made for one process's scratch files, `parent`/`name` (made
/// with its parents; std::runtime_error naming it when it exists already
/// or cannot be made), removed when the last holder lets go, if empty by
/// then. The StateFiles made in it hold it.
class ScratchFolder {
 public:
  static std::shared_ptr<const ScratchFolder> create(const std::filesystem::path& parent, const std::string& name);
  ~ScratchFolder();
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  explicit ScratchFolder(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

/// "<host>_<pid>": a name no other process running now gives (for file
/// and folder names on a drive that several ranks or jobs share).
std::string process_scratch_name();

class StateFile {
 public:
  /// A new file `path` (std::runtime_error naming it when it exists or
  /// cannot be made) with room for `capacity_bytes` (page-aligned
  /// allocations, below, must fit). `folder`: held while the file lives
  /// (the folder it is in, when made for it).
  static std::shared_ptr<StateFile> create(const std::filesystem::path& path, int64_t capacity_bytes,
                                           std::shared_ptr<const ScratchFolder> folder = nullptr);
  ~StateFile();
  StateFile(const StateFile&) = delete;
  StateFile& operator=(const StateFile&) = delete;

  /// Bytes `numel` elements of `dtype` take in the file (whole pages).
  static int64_t room_for(int64_t numel, c10::ScalarType dtype = c10::kFloat);

  /// `numel` zeros of `dtype`, the next free pages of the file, on disk
  /// blocks reserved now. The tensor keeps the mapping alive.
  torch::Tensor allocate(int64_t numel, c10::ScalarType dtype = c10::kFloat);
  /// Whether `t`'s data lies in this file.
  bool holds(const torch::Tensor& t) const;

  /// Starts reading every allocated page not in memory (returns at once).
  void prefetch() const;
  /// Starts writing every dirty page back to the drive (returns at once).
  void write_back() const;

  const std::filesystem::path& path() const { return path_; }
  /// Bytes allocated so far.
  int64_t used_bytes() const { return used_; }

 private:
  StateFile(std::filesystem::path path, int fd, void* base, int64_t capacity);

  std::filesystem::path path_;
  int fd_;
  char* base_;
  int64_t capacity_;  // bytes
  int64_t used_ = 0;  // bytes
  std::shared_ptr<const ScratchFolder> folder_;
  std::weak_ptr<StateFile> self_;
};

}  // namespace accel::fsdp
