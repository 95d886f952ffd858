#include "accel/big_model/device_loader.h"

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "accel/parallel/fsdp/copy_streams.h"
#include "accel/util/check.h"
#include "accel/util/host_memory.h"

namespace accel::big_model {

namespace {

// A byte range of one item's stored tensor.
struct Chunk {
  size_t item;
  int64_t begin;
  int64_t bytes;
};

class Descriptor {
 public:
  explicit Descriptor(const std::filesystem::path& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    ACCEL_CHECK(fd_ >= 0, "cannot open safetensors file '", path.string(), "': ", std::strerror(errno));
  }
  ~Descriptor() { ::close(fd_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

void read_fully(int fd, char* out, int64_t bytes, uint64_t offset, const LoadItem& item) {
  while (bytes > 0) {
    ssize_t n = ::pread(fd, out, static_cast<size_t>(bytes), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    ACCEL_CHECK(n > 0, "cannot read tensor '", item.info->name, "' from safetensors file '", item.file->path().string(),
                "': ", n < 0 ? std::strerror(errno) : "file shrank while open");
    out += n;
    offset += static_cast<uint64_t>(n);
    bytes -= n;
  }
}

// What one reader thread holds.
struct Reader {
  std::array<torch::Tensor, 2> staging;  // pinned uint8, for CUDA destinations
  std::array<std::optional<c10::Event>, 2> copied;
  size_t next = 0;
  torch::Tensor host_scratch;                                // CPU destinations of another dtype
  std::map<c10::DeviceIndex, torch::Tensor> device_scratch;  // CUDA destinations of another dtype

  void wait_copies() {
    for (auto& c : copied)
      if (c) {
        c->synchronize();
        c.reset();
      }
  }
};

class Loading {
 public:
  Loading(const std::vector<LoadItem>& items, int64_t largest) : items_(items), chunk_bytes_(largest) {
    for (size_t i = 0; i < items.size(); ++i) {
      const LoadItem& it = items[i];
      if (!fds_.count(it.file)) fds_.emplace(it.file, std::make_unique<Descriptor>(it.file->path()));
      const auto nbytes = static_cast<int64_t>(it.info->nbytes());
      for (int64_t b = 0; b < nbytes; b += chunk_bytes_) chunks_.push_back({i, b, std::min(chunk_bytes_, nbytes - b)});
      const c10::Device d = it.dst.device();
      if (d.is_cuda() && !streams_.count(d.index())) {
        const c10::Stream stream = fsdp::copy_streams_for(d)->to_device;
        // The destinations may reuse memory the compute stream freed.
        fsdp::wait_stream(stream, fsdp::current_stream(d));
        streams_.emplace(d.index(), stream);
      }
    }
  }

  void run(int threads) {
    std::vector<std::thread> pool;
    for (size_t i = 0; i < std::min<size_t>(threads, chunks_.size()); ++i) pool.emplace_back([this] { read_chunks(); });
    for (auto& t : pool) t.join();
    if (error_) std::rethrow_exception(error_);
    for (const auto& [index, stream] : streams_) fsdp::wait_stream(fsdp::current_stream(stream.device()), stream);
  }

 private:
  void read_chunks() {
    Reader r;
    try {
      c10::NoGradGuard no_grad;
      for (size_t k = next_++; k < chunks_.size() && !failed_; k = next_++) read_chunk(r, chunks_[k]);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_ = true;
    }
    try {
      r.wait_copies();  // pinned staging must outlive the copies out of it
    } catch (...) {
    }
  }

  void read_chunk(Reader& r, const Chunk& c) {
    const LoadItem& it = items_[c.item];
    const torch::ScalarType stored = safetensors::to_scalar_type(it.info->dtype);
    const int64_t size = static_cast<int64_t>(c10::elementSize(stored));
    const int fd = fds_.at(it.file)->fd();
    const uint64_t offset = it.file->header().data_start() + it.info->begin + static_cast<uint64_t>(c.begin);
    torch::Tensor dst = it.dst.view(-1).narrow(0, c.begin / size, c.bytes / size);
    const bool same = it.dst.scalar_type() == stored;

    if (it.dst.is_cpu()) {
      if (same) return read_fully(fd, static_cast<char*>(dst.data_ptr()), c.bytes, offset, it);
      if (!r.host_scratch.defined()) r.host_scratch = torch::empty({chunk_bytes_}, torch::kUInt8);
      read_fully(fd, static_cast<char*>(r.host_scratch.data_ptr()), c.bytes, offset, it);
      dst.copy_(r.host_scratch.narrow(0, 0, c.bytes).view(stored));
      return;
    }
    const size_t slot = r.next;
    r.next = (r.next + 1) % r.staging.size();
    if (r.copied[slot]) r.copied[slot]->synchronize();  // its last copy has left the buffer
    if (!r.staging[slot].defined()) r.staging[slot] = host_empty(chunk_bytes_, torch::kUInt8, /*pin=*/true);
    read_fully(fd, static_cast<char*>(r.staging[slot].data_ptr()), c.bytes, offset, it);
    const c10::Stream& stream = streams_.at(it.dst.device().index());
    c10::StreamGuard on_copy(stream);
    auto staged = r.staging[slot].narrow(0, 0, c.bytes).view(stored);
    if (same) {
      dst.copy_(staged, /*non_blocking=*/true);
    } else {
      auto& scratch = r.device_scratch[stream.device_index()];
      if (!scratch.defined())
        scratch = torch::empty({chunk_bytes_}, torch::dtype(torch::kUInt8).device(it.dst.device()));
      auto on_device = scratch.narrow(0, 0, c.bytes).view(stored);
      on_device.copy_(staged, /*non_blocking=*/true);
      dst.copy_(on_device, /*non_blocking=*/true);  // converted on the copy stream, after the copy in
    }
    c10::Event copied(stream.device_type());
    copied.record(stream);
    r.copied[slot] = std::move(copied);
  }

  const std::vector<LoadItem>& items_;
  const int64_t chunk_bytes_;
  std::unordered_map<const safetensors::File*, std::unique_ptr<Descriptor>> fds_;
  std::vector<Chunk> chunks_;
  std::map<c10::DeviceIndex, c10::Stream> streams_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr error_;
};

}  // namespace

void load_tensors(const std::vector<LoadItem>& items, int threads) {
  ACCEL_CHECK_ARG(threads >= 1, "load_checkpoint_and_dispatch: read_threads is ", threads, "; expected at least 1");
  int64_t largest = 0;
  for (const auto& it : items) {
    ACCEL_CHECK(it.dst.is_contiguous() && it.dst.sizes() == torch::IntArrayRef(it.info->shape) &&
                    (it.dst.is_cpu() || it.dst.is_cuda()),
                "load_tensors: the destination of '", it.info->name,
                "' is not a contiguous CPU or CUDA tensor of its shape");
    largest = std::max(largest, static_cast<int64_t>(it.info->nbytes()));
  }
  if (largest == 0) return;
  // Chunks a multiple of every element size, so each holds whole elements.
  Loading loading(items, std::min(kLoadChunkBytes, (largest + 15) / 16 * 16));
  loading.run(threads);
}

}  // namespace accel::big_model
