#pragma once
// TaskThread: runs queued work in order on a thread of its own, so that a
// tracker's log() on the training thread only prepares and queues. The
// first failure is kept until the caller takes it (and rethrows it where a
// tracker's errors are reported). Private to the library.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace accel {

class TaskThread {
 public:
  TaskThread();
  /// Runs what is queued, then ends the thread.
  ~TaskThread();
  TaskThread(const TaskThread&) = delete;
  TaskThread& operator=(const TaskThread&) = delete;

  void push(std::function<void()> task);
  /// Returns when every task queued so far has run.
  void wait_idle();
  /// The first failure (a task's exception message) not yet taken, or "".
  std::string take_error();

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> queue_;
  bool busy_ = false;
  bool stop_ = false;
  std::string error_;
  std::thread thread_;
};

}  // namespace accel
