#include "accel/parallel/fsdp/state_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
int64_t page_aligned(int64_t bytes) { return (bytes + page_size() - 1) / page_size() * page_size(); }

}  // namespace

std::shared_ptr<const ScratchFolder> ScratchFolder::create(const std::filesystem::path& parent,
                                                           const std::string& name) {
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  ACCEL_CHECK(!ec, "cannot make the folder '", parent.string(), "': ", ec.message());
  const auto path = parent / name;
  // Not there before: a folder of another process is never shared.
  ACCEL_CHECK(::mkdir(path.c_str(), 0700) == 0, "cannot make the folder '", path.string(), "': ", std::strerror(errno));
  return std::shared_ptr<const ScratchFolder>(new ScratchFolder(path));
}

ScratchFolder::~ScratchFolder() { ::rmdir(path_.c_str()); }  // fails, harmlessly, if something else was put there

std::string process_scratch_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) std::strcpy(name, "host");
  return std::string(name) + "_" + std::to_string(::getpid());
}

int64_t StateFile::room_for(int64_t numel, c10::ScalarType dtype) {
  return page_aligned(numel * static_cast<int64_t>(c10::elementSize(dtype)));
}

std::shared_ptr<StateFile> StateFile::create(const std::filesystem::path& path, int64_t capacity_bytes,
                                             std::shared_ptr<const ScratchFolder> folder) {
  ACCEL_CHECK_ARG(capacity_bytes >= 0, "StateFile: capacity is ", capacity_bytes, " bytes, expected >= 0");
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  ACCEL_CHECK(!ec, "cannot make the folder '", path.parent_path().string(), "' for offloaded state: ", ec.message());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ACCEL_CHECK(fd >= 0, "cannot create the offload file '", path.string(), "': ", std::strerror(errno));
  // Room for the largest page-aligned use; sparse until allocate() reserves it.
  const int64_t bytes = std::max<int64_t>(page_aligned(capacity_bytes), page_size());
  void* base = MAP_FAILED;
  if (::ftruncate(fd, bytes) == 0) base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    fail<std::runtime_error>("cannot map the offload file '", path.string(), "' (", bytes,
                             " bytes): ", std::strerror(err));
  }
  auto file = std::shared_ptr<StateFile>(new StateFile(path, fd, base, bytes));
  file->folder_ = std::move(folder);
  file->self_ = file;
  return file;
}

StateFile::StateFile(std::filesystem::path path, int fd, void* base, int64_t capacity)
    : path_(std::move(path)), fd_(fd), base_(static_cast<char*>(base)), capacity_(capacity) {}

StateFile::~StateFile() {
  ::munmap(base_, capacity_);
  ::close(fd_);
  ::unlink(path_.c_str());  // scratch: nothing reads it once the tensors are gone
}

torch::Tensor StateFile::allocate(int64_t numel, c10::ScalarType dtype) {
  ACCEL_CHECK_ARG(numel >= 0, "StateFile: numel is ", numel, ", expected >= 0");
  const int64_t begin = used_, room = room_for(numel, dtype);
  ACCEL_CHECK(begin + room <= capacity_, "the offload file '", path_.string(), "' is full: ", room,
              " more bytes asked after ", used_, " of ", capacity_);
  if (numel > 0) {
    const int err = ::posix_fallocate(fd_, begin, room);
    ACCEL_CHECK(err == 0, "cannot reserve ", room, " bytes on disk for the offload file '", path_.string(),
                "': ", std::strerror(err));
  }
  used_ = begin + room;
  // The deleter holds the file, so that the tensors (kept by the optimizer)
  // outlive whatever made them.
  auto keep = self_.lock();
  return torch::from_blob(
      base_ + begin, {numel}, [keep](void*) {}, torch::TensorOptions().dtype(dtype));
}

bool StateFile::holds(const torch::Tensor& t) const {
  if (!t.defined() || !t.is_cpu()) return false;
  const auto* p = static_cast<const char*>(t.data_ptr());
  return p >= base_ && p < base_ + capacity_;
}

void StateFile::prefetch() const {
  if (used_ > 0) ::madvise(base_, used_, MADV_WILLNEED);  // a hint: nothing to report
}

void StateFile::write_back() const {
  if (used_ > 0) ::sync_file_range(fd_, 0, used_, SYNC_FILE_RANGE_WRITE);  // a hint, as above
}

}  // namespace accel::fsdp
