#include "accel/tracking/task_thread.h"

#include <exception>
#include <utility>

namespace accel {

TaskThread::TaskThread() : thread_([this] { run(); }) {}

TaskThread::~TaskThread() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void TaskThread::push(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
}

void TaskThread::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

std::string TaskThread::take_error() {
  std::lock_guard lock(mutex_);
  return std::exchange(error_, std::string());
}

void TaskThread::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty() && stop_) return;
    auto tasks = std::move(queue_);
    queue_.clear();
    busy_ = true;
    lock.unlock();
    std::string failure;
    for (auto& task : tasks) {
      try {
        task();
      } catch (const std::exception& error) {
        if (failure.empty()) failure = error.what();
      }
    }
    lock.lock();
    busy_ = false;
    if (!failure.empty() && error_.empty()) error_ = std::move(failure);
    idle_.notify_all();
  }
}

}  // namespace accel
