#include "accel/checkpoint/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

#include "accel/util/check.h"

namespace accel {
namespace {

[[noreturn]] void fail_io(const char* what, const std::filesystem::path& path, int error) {
  fail<std::runtime_error>(what, " '", path.string(), "': ", std::strerror(error));
}

std::filesystem::path temp_name_for(const std::filesystem::path& target) {
  // Random bits in the name: another local user cannot guess it to plant a
  // link there in advance (O_EXCL would refuse to open through one anyway).
  static std::atomic<unsigned> counter{0};
  static thread_local std::mt19937_64 random{std::random_device{}()};
  char bits[17];
  std::snprintf(bits, sizeof bits, "%016llx", static_cast<unsigned long long>(random()));
  auto name = "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
              std::to_string(counter.fetch_add(1)) + "-" + bits;
  return target.parent_path() / name;
}

// Linux writes at most ~2 GiB per call; larger tensors go in pieces.
constexpr size_t kMaxWriteChunk = size_t{1} << 30;

}  // namespace

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
  ACCEL_CHECK_ARG(!target_.filename().empty(), "AtomicFile: '", target_.string(), "' names no file");
  temp_ = temp_name_for(target_);
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_io("cannot create temporary file", temp_, errno);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : target_(std::move(other.target_)),
      temp_(std::move(other.temp_)),
      fd_(other.fd_),
      written_(other.written_),
      committed_(other.committed_) {
  other.fd_ = -1;
  other.committed_ = true;  // the moved-from object owns nothing to clean up
}

AtomicFile::~AtomicFile() {
  if (!committed_) discard();
}

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  ACCEL_CHECK_STATE(fd_ >= 0, "AtomicFile: write after close of '", target_.string(), "'");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, std::min(size, kMaxWriteChunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_io("cannot write", target_, errno);
    }
    p += n;
    size -= static_cast<size_t>(n);
    written_ += static_cast<size_t>(n);
  }
}

void AtomicFile::close() {
  if (fd_ < 0) return;
  if (::fsync(fd_) != 0) fail_io("cannot flush", target_, errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_io("cannot close", target_, errno);
}

void AtomicFile::commit() {
  ACCEL_CHECK_STATE(!committed_, "AtomicFile: '", target_.string(), "' committed twice");
  close();
  if (::rename(temp_.c_str(), target_.c_str()) != 0) fail_io("cannot rename temporary file onto", target_, errno);
  committed_ = true;
  auto dir = target_.parent_path();
  sync_directory(dir.empty() ? std::filesystem::path(".") : dir);
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

void sync_directory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail_io("cannot open directory", dir, errno);
  int rc = ::fsync(fd);
  int error = errno;
  ::close(fd);
  if (rc != 0) fail_io("cannot flush directory", dir, error);
}

}  // namespace accel
