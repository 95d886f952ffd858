#include "accel/tracking/record_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "accel/util/check.h"
#include "accel/util/crc32c.h"

namespace accel {

std::string frame_record(const std::string& data) {
  const uint64_t length = data.size();
  std::string header(sizeof length, '\0');
  std::memcpy(header.data(), &length, sizeof length);  // little-endian, as the format wants
  auto append_u32 = [](std::string& out, uint32_t value) {
    char bytes[sizeof value];
    std::memcpy(bytes, &value, sizeof value);
    out.append(bytes, sizeof value);
  };
  std::string out = header;
  append_u32(out, masked_crc32c(header));
  out += data;
  append_u32(out, masked_crc32c(data));
  return out;
}

RecordWriter::RecordWriter(std::filesystem::path path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ACCEL_CHECK(fd_ >= 0, "cannot create ", path_.string(), ": ", std::strerror(errno));
  thread_ = std::thread([this] { run(); });
}

RecordWriter::~RecordWriter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
  ::close(fd_);
}

void RecordWriter::throw_if_failed() { ACCEL_CHECK(error_.empty(), "writing ", path_.string(), " failed: ", error_); }

void RecordWriter::write(std::string data) { write_framed(frame_record(data)); }

void RecordWriter::write_framed(std::string framed) {
  {
    std::lock_guard lock(mutex_);
    throw_if_failed();
    queue_.push_back(std::move(framed));
  }
  wake_.notify_one();
}

void RecordWriter::flush() {
  std::unique_lock lock(mutex_);
  written_.wait(lock, [&] { return (queue_.empty() && !busy_) || !error_.empty(); });
  throw_if_failed();
}

void RecordWriter::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty() && stop_) return;
    // Take everything queued and write it in one go, without the lock.
    std::string batch;
    for (auto& record : queue_) batch += record;
    queue_.clear();
    busy_ = true;
    lock.unlock();
    std::string failure;
    for (size_t done = 0; done < batch.size();) {
      const ssize_t n = ::write(fd_, batch.data() + done, batch.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        failure = n < 0 ? std::strerror(errno) : "the system wrote nothing";
        break;
      }
      done += static_cast<size_t>(n);
    }
    lock.lock();
    busy_ = false;
    if (!failure.empty() && error_.empty()) error_ = failure;
    written_.notify_all();
  }
}

}  // namespace accel
