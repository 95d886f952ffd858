#pragma once
// RecordWriter: a file of TFRecord-framed records (TensorBoard's event
// files; or records its caller frames), appended from a thread of its own so that a tracker's log() on
// the training thread only encodes and queues.
//
// A record on disk: its length (uint64, little-endian), the masked CRC-32C
// of those 8 bytes, the data, the masked CRC-32C of the data.
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

namespace accel {

/// The framed bytes of one record.
std::string frame_record(const std::string& data);

class RecordWriter {
 public:
  /// Creates `path` (an existing file is replaced); throws naming it and
  /// the system's reason when it cannot.
  explicit RecordWriter(std::filesystem::path path);
  /// Writes what is queued, then closes the file.
  ~RecordWriter();
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  /// Queues one record. Throws the writer thread's first error (a full
  /// disk) instead, once it has met one: the records after it are lost.
  void write(std::string data);
  /// Queues bytes already framed by the caller (formats other than
  /// TFRecord: W&B's LevelDB-style log), with write()'s errors.
  void write_framed(std::string bytes);
  /// Returns when every record queued so far is in the file (handed to
  /// the operating system, where TensorBoard reading it live sees it).
  /// Throws the writer's error as write() does.
  void flush();
  const std::filesystem::path& path() const { return path_; }

 private:
  void run();
  void throw_if_failed();  // with mutex_ held

  std::filesystem::path path_;
  int fd_ = -1;
  std::mutex mutex_;
  std::condition_variable wake_;     // the thread: records queued, or stop
  std::condition_variable written_;  // flush(): the queue drained
  std::deque<std::string> queue_;
  bool busy_ = false;  // the thread holds records it took off the queue
  bool stop_ = false;
  std::string error_;
  std::thread thread_;
};

}  // namespace accel
