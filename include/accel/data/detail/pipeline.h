#pragma once
// Internal: one epoch of a loader, read ahead by worker threads.
//
// Jobs are numbered when they are taken (under the lock, so in the
// sampler's or the stream's order), run in parallel, and handed out by
// number: the batches come out in exactly the order num_workers=0 gives.
// At most workers * prefetch_factor batches are taken ahead of the
// consumer. An exception from a job reaches the consumer at that batch.
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "accel/data/batch.h"
#include "accel/data/detail/source.h"
#include "accel/data/worker_pool.h"

namespace accel::detail {

template <class Batch>
class EpochRun {
 public:
  virtual ~EpochRun() = default;
  /// The next batch of the epoch; nullopt at its end.
  virtual std::optional<Batch> next() = 0;
  /// Real (non-repeated) examples in the last global batch, when the run
  /// measured it (the dispatcher does); nullopt to use the static rule.
  virtual std::optional<int64_t> measured_remainder() const { return std::nullopt; }
};

template <class Batch>
class Pipeline : public EpochRun<Batch> {
 public:
  /// `pool` null: everything runs on the caller's thread.
  Pipeline(std::unique_ptr<EpochJobs<Batch>> jobs, int64_t skip, std::shared_ptr<WorkerPool> pool,
           int64_t prefetch_factor, bool pin_memory)
      : jobs_(std::move(jobs)), pool_(std::move(pool)), pin_(pin_memory) {
    for (int64_t i = 0; i < skip && jobs_->skip(); ++i) {
    }
    if (!pool_) return;
    limit_ = pool_->size() * prefetch_factor;
    active_ = pool_->size();
    for (int64_t i = 0; i < pool_->size(); ++i) pool_->submit([this] { work(); });
  }

  ~Pipeline() override {
    if (!pool_) return;
    std::unique_lock lock(mutex_);
    stopping_ = true;
    work_cv_.notify_all();
    done_cv_.wait(lock, [&] { return active_ == 0; });
  }

  std::optional<Batch> next() override {
    if (!pool_) {
      auto job = jobs_->next();
      if (!job) return std::nullopt;
      return finish((*job)());
    }
    std::unique_lock lock(mutex_);
    done_cv_.wait(lock, [&] { return ready_.count(consumed_) || (exhausted_ && consumed_ >= taken_); });
    auto it = ready_.find(consumed_);
    if (it == ready_.end()) return std::nullopt;
    Result r = std::move(it->second);
    ready_.erase(it);
    ++consumed_;
    lock.unlock();
    work_cv_.notify_one();
    if (r.error) std::rethrow_exception(r.error);
    return std::move(r.batch);
  }

 private:
  struct Result {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };

  Batch finish(Batch b) { return pin_ ? pin_batch(std::move(b)) : std::move(b); }

  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stopping_ || exhausted_ || taken_ - consumed_ < limit_; });
      if (stopping_ || exhausted_) break;
      const int64_t seq = taken_;
      Result r;
      std::optional<BatchJob<Batch>> job;
      try {
        job = jobs_->next();
      } catch (...) {
        r.error = std::current_exception();
      }
      if (!job && !r.error) {
        exhausted_ = true;
        break;
      }
      ++taken_;
      if (r.error) {
        exhausted_ = true;
        ready_.emplace(seq, std::move(r));
        break;
      }
      lock.unlock();
      try {
        r.batch = finish((*job)());
      } catch (...) {
        r.error = std::current_exception();
      }
      lock.lock();
      ready_.emplace(seq, std::move(r));
      done_cv_.notify_all();
    }
    --active_;
    work_cv_.notify_all();
    done_cv_.notify_all();
  }

  std::unique_ptr<EpochJobs<Batch>> jobs_;
  std::shared_ptr<WorkerPool> pool_;
  bool pin_;
  int64_t limit_ = 0;

  std::mutex mutex_;
  std::condition_variable work_cv_, done_cv_;
  std::map<int64_t, Result> ready_;
  int64_t taken_ = 0, consumed_ = 0, active_ = 0;
  bool exhausted_ = false, stopping_ = false;
};

}  // namespace accel::detail
