#include "accel/optim/nvme_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "accel/util/check.h"

namespace accel {
namespace detail {

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

// One read or write of a whole file, cut into pieces that run on the pool.
struct IoRequest {
  std::string path;
  int fd = -1;
  bool write = false;
  torch::Tensor hold;  // keeps the buffer alive until done
  std::atomic<int64_t> remaining{0};

  std::mutex mutex;
  std::condition_variable cv;
  bool finished = false;
  std::string error;

  void fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex);
    if (error.empty()) error = message;
  }
  // Called by the thread that finished the last piece.
  void complete() {
    if (::close(fd) != 0 && write) fail("NvmeStore: closing " + path + ": " + errno_text(errno));
    fd = -1;
    hold = torch::Tensor();
    {
      std::lock_guard<std::mutex> lock(mutex);
      finished = true;
    }
    cv.notify_all();
  }
};

class IoPool {
 public:
  explicit IoPool(int threads) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
  }
  ~IoPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void post(std::vector<std::function<void()>> tasks) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& t : tasks) queue_.push_back(std::move(t));
    }
    cv_.notify_all();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_ and drained
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace detail

namespace {

constexpr int64_t kDirectAlign = 4096;

void move_piece(detail::IoRequest& r, char* base, int64_t begin, int64_t end) {
  int64_t done = begin;
  while (done < end) {
    const size_t n = static_cast<size_t>(end - done);
    const ssize_t got = r.write ? ::pwrite(r.fd, base + done, n, done) : ::pread(r.fd, base + done, n, done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      r.fail(std::string("NvmeStore: ") + (r.write ? "writing " : "reading ") + r.path + " at byte " +
             std::to_string(done) + ": " + detail::errno_text(errno));
      return;
    }
    if (got == 0) {
      r.fail("NvmeStore: reading " + r.path + ": the file ended at byte " + std::to_string(done) + ", expected " +
             std::to_string(end) + " bytes or more");
      return;
    }
    done += got;
  }
}

}  // namespace

void IoHandle::wait() const {
  if (!request_) return;
  std::unique_lock<std::mutex> lock(request_->mutex);
  request_->cv.wait(lock, [this] { return request_->finished; });
  ACCEL_CHECK(request_->error.empty(), request_->error);
}

bool IoHandle::done() const {
  if (!request_) return true;
  std::lock_guard<std::mutex> lock(request_->mutex);
  return request_->finished;
}

NvmeStore::NvmeStore(NvmeStoreOptions options) : options_(std::move(options)) {
  ACCEL_CHECK_ARG(options_.io_threads() >= 1, "NvmeStoreOptions: io_threads = ", options_.io_threads(),
                  ", expected >= 1");
  ACCEL_CHECK_ARG(options_.block_bytes() >= kDirectAlign, "NvmeStoreOptions: block_bytes = ", options_.block_bytes(),
                  ", expected >= 4096");
  ACCEL_CHECK_ARG(!options_.folder().empty(), "NvmeStoreOptions: folder is empty");
  const std::string folder = options_.folder().string();
  std::error_code ec;
  std::filesystem::create_directories(options_.folder(), ec);
  ACCEL_CHECK(!ec, "NvmeStore: cannot make the folder ", folder, ": ", ec.message());
  // Fail now, not at the first step, when nothing can be written here.
  const std::string probe = (options_.folder() / ".accel_nvme_probe").string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ACCEL_CHECK(fd >= 0, "NvmeStore: cannot write in ", folder, ": ", detail::errno_text(errno));
  ::close(fd);
  ::unlink(probe.c_str());
  pool_ = std::make_unique<detail::IoPool>(options_.io_threads());
}

NvmeStore::~NvmeStore() {
  pool_.reset();  // runs what is queued, then joins
  for (const auto& key : keys_) ::unlink(path_of(key).c_str());
}

std::filesystem::path NvmeStore::path_of(const std::string& key) const {
  ACCEL_CHECK_ARG(
      !key.empty() && std::all_of(key.begin(), key.end(),
                                  [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '_' || c == '-'; }),
      "NvmeStore: key '", key, "': expected letters, digits, '.', '_' and '-' only");
  return options_.folder() / (key + ".swp");
}

bool NvmeStore::contains(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return keys_.count(key) > 0;
}

IoHandle NvmeStore::write(const std::string& key, const torch::Tensor& tensor) { return submit(key, tensor, true); }

IoHandle NvmeStore::read(const std::string& key, const torch::Tensor& into) { return submit(key, into, false); }

IoHandle NvmeStore::submit(const std::string& key, const torch::Tensor& tensor, bool write) {
  const std::string what = write ? "write" : "read";
  ACCEL_CHECK_ARG(tensor.defined() && tensor.device().is_cpu() && tensor.is_contiguous(), "NvmeStore::", what, "('",
                  key, "'): expected a contiguous CPU tensor");
  const std::string path = path_of(key).string();
  const int64_t nbytes = static_cast<int64_t>(tensor.nbytes());
  char* base = static_cast<char*>(tensor.data_ptr());

  auto r = std::make_shared<detail::IoRequest>();
  r->path = path;
  r->write = write;
  r->hold = tensor;
  const int flags = write ? (O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC);
  const bool aligned = reinterpret_cast<uintptr_t>(base) % kDirectAlign == 0 && nbytes % kDirectAlign == 0;
  if (options_.direct_io() && aligned) {
    r->fd = ::open(path.c_str(), flags | O_DIRECT, 0644);
    if (r->fd < 0 && errno != EINVAL) {
      fail<std::runtime_error>("NvmeStore: cannot open ", path, " for ", write ? "writing" : "reading", ": ",
                               detail::errno_text(errno));
    }
  }
  if (r->fd < 0) r->fd = ::open(path.c_str(), flags, 0644);  // no O_DIRECT here (tmpfs, unaligned)
  ACCEL_CHECK(r->fd >= 0, "NvmeStore: cannot open ", path, " for ", write ? "writing" : "reading", ": ",
              detail::errno_text(errno), write ? "" : " (was the key written?)");
  if (write) {
    std::lock_guard<std::mutex> lock(mutex_);
    keys_.insert(key);
  } else {
    struct stat st {};
    if (::fstat(r->fd, &st) != 0) {
      const int err = errno;
      ::close(r->fd);
      fail<std::runtime_error>("NvmeStore: cannot stat ", path, ": ", detail::errno_text(err));
    }
    if (st.st_size != nbytes) {
      ::close(r->fd);
      fail<std::runtime_error>("NvmeStore: ", path, " has ", st.st_size, " bytes, expected ", nbytes);
    }
  }
  if (nbytes == 0) {
    r->complete();
    return IoHandle(r);
  }
  const int64_t block = options_.block_bytes();
  const int64_t pieces = (nbytes + block - 1) / block;
  r->remaining = pieces;
  std::vector<std::function<void()>> tasks;
  tasks.reserve(pieces);
  for (int64_t i = 0; i < pieces; ++i) {
    const int64_t begin = i * block, end = std::min(nbytes, begin + block);
    tasks.emplace_back([r, base, begin, end] {
      move_piece(*r, base, begin, end);
      if (r->remaining.fetch_sub(1) == 1) r->complete();
    });
  }
  pool_->post(std::move(tasks));
  return IoHandle(r);
}

}  // namespace accel
