#pragma once
// A fixed set of threads running submitted tasks: the loader's workers.
// Threads rather than processes: LibTorch has no GIL, so get() and collate
// run in parallel in one process, and batches need no copy between them.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "accel/util/export.h"

namespace accel {

class ACCEL_API WorkerPool {
 public:
  explicit WorkerPool(int64_t threads);
  /// Finishes the tasks already submitted, then joins the threads.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void submit(std::function<void()> task);
  int64_t size() const { return static_cast<int64_t>(threads_.size()); }

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace accel
