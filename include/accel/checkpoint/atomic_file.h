#pragma once
// Writing a file so that a reader sees either the previous file or the
// complete new one, never a partial write: the bytes go to a temporary file
// in the same directory (rename is only atomic within a file system), are
// flushed to disk with fsync, and the temporary file is then renamed over
// the target (and the directory fsync'ed so that the rename survives a
// power cut). An AtomicFile destroyed before commit() removes its temporary
// file, so a failed or interrupted save leaves the old file as it was.
#include <cstddef>
#include <filesystem>
#include <string_view>

#include "accel/util/export.h"

namespace accel {

class ACCEL_API AtomicFile {
 public:
  /// Opens "<dir>/.<name>.tmp-<pid>-<n>-<random>" next to `target` for
  /// writing, with O_EXCL: never through a link planted at that name.
  /// Throws std::runtime_error naming the path and the system error.
  explicit AtomicFile(std::filesystem::path target);
  ~AtomicFile();
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Appends bytes (any length; retried on short writes and EINTR).
  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  /// Bytes written so far.
  size_t size() const { return written_; }

  /// Flushes the bytes to disk and closes the temporary file; the target is
  /// not touched yet. Lets a caller finish several files before renaming
  /// any of them, which shrinks the window in which a set of files is mixed.
  void close();
  /// close() if needed, then renames the temporary file onto the target.
  void commit();

  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temp_path() const { return temp_; }

 private:
  void discard() noexcept;

  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  size_t written_ = 0;
  bool committed_ = false;
};

/// Writes `bytes` to `path` atomically.
ACCEL_API void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

/// fsync of a directory, so that renames and removals in it are durable.
ACCEL_API void sync_directory(const std::filesystem::path& dir);

}  // namespace accel
