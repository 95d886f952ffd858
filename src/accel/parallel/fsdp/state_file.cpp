#include "accel/parallel/fsdp/state_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "accel/util/check.h"

namespace accel::fsdp {

namespace {

int64_t page_size() {
  static const int64_t size = sysconf(_SC_PAGESIZE);
  return size;
}

// Allocations start on page boundaries, so that one tensor's pages are its own.
int64_t page_aligned(int64_t elements) {
  const int64_t per_page = page_size() / static_cast<int64_t>(sizeof(float));
  return (elements + per_page - 1) / per_page * per_page;
}

}  // namespace

std::shared_ptr<StateFile> StateFile::create(const std::filesystem::path& path, int64_t capacity) {
  ACCEL_CHECK_ARG(capacity >= 0, "StateFile: capacity is ", capacity, ", expected >= 0");
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  ACCEL_CHECK(!ec, "cannot make the folder '", path.parent_path().string(), "' for optimizer state: ", ec.message());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ACCEL_CHECK(fd >= 0, "cannot create the optimizer state file '", path.string(), "': ", std::strerror(errno));
  // Room for the largest page-aligned use; sparse until allocate() reserves it.
  const int64_t bytes = std::max<int64_t>(page_aligned(capacity) * sizeof(float), page_size());
  void* base = MAP_FAILED;
  if (::ftruncate(fd, bytes) == 0) base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    fail<std::runtime_error>("cannot map the optimizer state file '", path.string(), "' (", bytes,
                             " bytes): ", std::strerror(err));
  }
  auto file = std::shared_ptr<StateFile>(new StateFile(path, fd, base, bytes / sizeof(float)));
  file->self_ = file;
  return file;
}

StateFile::StateFile(std::filesystem::path path, int fd, void* base, int64_t capacity)
    : path_(std::move(path)), fd_(fd), base_(static_cast<float*>(base)), capacity_(capacity) {}

StateFile::~StateFile() {
  ::munmap(base_, capacity_ * sizeof(float));
  ::close(fd_);
  ::unlink(path_.c_str());  // scratch: nothing reads it once the tensors are gone
}

torch::Tensor StateFile::allocate(int64_t numel) {
  ACCEL_CHECK_ARG(numel >= 0, "StateFile: numel is ", numel, ", expected >= 0");
  const int64_t begin = used_, room = page_aligned(numel);
  ACCEL_CHECK(begin + room <= capacity_, "the optimizer state file '", path_.string(), "' is full: ", numel,
              " more elements asked after ", used_, " of ", capacity_);
  if (numel > 0) {
    const int err = ::posix_fallocate(fd_, begin * sizeof(float), room * sizeof(float));
    ACCEL_CHECK(err == 0, "cannot reserve ", room * sizeof(float), " bytes on disk for the optimizer state file '",
                path_.string(), "': ", std::strerror(err));
  }
  used_ = begin + room;
  // The deleter holds the file, so that the tensors (kept by the optimizer)
  // outlive whatever made them.
  auto keep = self_.lock();
  return torch::from_blob(
      base_ + begin, {numel}, [keep](void*) {}, torch::TensorOptions().dtype(torch::kFloat));
}

bool StateFile::holds(const torch::Tensor& t) const {
  if (!t.defined() || !t.is_cpu()) return false;
  const auto* p = static_cast<const char*>(t.data_ptr());
  const auto* b = reinterpret_cast<const char*>(base_);
  return p >= b && p < b + capacity_ * sizeof(float);
}

void StateFile::prefetch() const {
  if (used_ > 0) ::madvise(base_, used_ * sizeof(float), MADV_WILLNEED);  // a hint: nothing to report
}

void StateFile::write_back() const {
  if (used_ > 0) ::sync_file_range(fd_, 0, used_ * sizeof(float), SYNC_FILE_RANGE_WRITE);  // a hint, as above
}

}  // namespace accel::fsdp
