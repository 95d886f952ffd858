#pragma once
// Internal: where a loader's batches come from, with the dataset's example
// type erased so that DataLoader depends on the batch type only.
//
// An epoch is a sequence of jobs. Taking the next job is the sequential
// part (advance a cursor over the batch sampler's batches, or read the next
// batch_size examples of a stream); running a job (get() and collate) is
// the part worker threads do in parallel.
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "accel/data/batch_sampler.h"
#include "accel/data/batch_sampler_shard.h"
#include "accel/data/collate.h"
#include "accel/data/dataset.h"
#include "accel/data/iterable_dataset_shard.h"

namespace accel::detail {

template <class Batch>
using BatchJob = std::function<Batch()>;

template <class Example, class Batch>
using CollateFnHolder = std::shared_ptr<const CollateFn<Example, Batch>>;

template <class Batch>
class EpochJobs {
 public:
  virtual ~EpochJobs() = default;
  /// The next batch's job; nullopt at the end of the epoch.
  virtual std::optional<BatchJob<Batch>> next() = 0;
  /// Passes over the next batch without building it; false at the end.
  virtual bool skip() = 0;
};

struct ShardSpec {
  int num_processes = 1;
  int process_index = 0;
  bool split_batches = false;
  bool even_batches = true;
};

template <class Batch>
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual std::unique_ptr<EpochJobs<Batch>> open(int64_t epoch) const = 0;
  /// Batches per epoch; -1 when unknown.
  virtual int64_t size() const = 0;
  virtual bool iterable() const = 0;
  /// Size of full batches; -1 when batches vary.
  virtual int64_t batch_size() const = 0;
  virtual bool drop_last() const = 0;
  /// Examples in the dataset; nullopt when unknown.
  virtual std::optional<int64_t> dataset_size() const = 0;
  virtual std::shared_ptr<Sampler> sampler() const { return nullptr; }
  /// This source cut into one rank's share.
  virtual std::shared_ptr<const BatchSource<Batch>> shard(const ShardSpec& spec) const = 0;
};

template <class Example, class Batch>
class MapSource : public BatchSource<Batch> {
 public:
  MapSource(std::shared_ptr<const Dataset<Example>> dataset, std::shared_ptr<BatchSamplerBase> batch_sampler,
            CollateFnHolder<Example, Batch> collate)
      : dataset_(std::move(dataset)), batch_sampler_(std::move(batch_sampler)), collate_(std::move(collate)) {}

  std::unique_ptr<EpochJobs<Batch>> open(int64_t epoch) const override {
    struct Jobs : EpochJobs<Batch> {
      std::shared_ptr<const Dataset<Example>> dataset;
      CollateFnHolder<Example, Batch> collate;
      IndexBatches batches;
      size_t cursor = 0;
      std::optional<BatchJob<Batch>> next() override {
        if (cursor >= batches.size()) return std::nullopt;
        auto indices = std::make_shared<Indices>(std::move(batches[cursor++]));
        return BatchJob<Batch>([ds = dataset, fn = collate, indices] {
          std::vector<Example> examples;
          examples.reserve(indices->size());
          for (int64_t i : *indices) examples.push_back(ds->get(i));
          return (*fn)(std::move(examples));
        });
      }
      bool skip() override { return cursor < batches.size() ? (++cursor, true) : false; }
    };
    auto jobs = std::make_unique<Jobs>();
    jobs->dataset = dataset_;
    jobs->collate = collate_;
    jobs->batches = batch_sampler_->batches(epoch);
    return jobs;
  }
  int64_t size() const override { return batch_sampler_->size(); }
  bool iterable() const override { return false; }
  int64_t batch_size() const override { return batch_sampler_->batch_size().value_or(-1); }
  bool drop_last() const override { return batch_sampler_->drop_last(); }
  std::optional<int64_t> dataset_size() const override { return dataset_->size(); }
  std::shared_ptr<Sampler> sampler() const override { return batch_sampler_->sampler(); }
  std::shared_ptr<const BatchSource<Batch>> shard(const ShardSpec& s) const override {
    auto sharded = std::make_shared<BatchSamplerShard>(batch_sampler_, s.num_processes, s.process_index,
                                                       s.split_batches, s.even_batches);
    return std::make_shared<MapSource>(dataset_, sharded, collate_);
  }

 private:
  std::shared_ptr<const Dataset<Example>> dataset_;
  std::shared_ptr<BatchSamplerBase> batch_sampler_;
  CollateFnHolder<Example, Batch> collate_;
};

template <class Example, class Batch>
class IterSource : public BatchSource<Batch> {
 public:
  IterSource(std::shared_ptr<const IterableDataset<Example>> dataset, int64_t batch_size, bool drop_last,
             CollateFnHolder<Example, Batch> collate)
      : dataset_(std::move(dataset)), batch_size_(batch_size), drop_last_(drop_last), collate_(std::move(collate)) {}

  std::unique_ptr<EpochJobs<Batch>> open(int64_t epoch) const override {
    struct Jobs : EpochJobs<Batch> {
      ExampleStream<Example> stream;
      CollateFnHolder<Example, Batch> collate;
      int64_t batch_size = 1;
      bool drop_last = false;
      bool done = false;
      // The next batch's examples, or nullopt at the end of the stream.
      std::optional<std::vector<Example>> read() {
        if (done) return std::nullopt;
        std::vector<Example> examples;
        examples.reserve(batch_size);
        while (static_cast<int64_t>(examples.size()) < batch_size) {
          auto e = stream();
          if (!e) {
            done = true;
            break;
          }
          examples.push_back(std::move(*e));
        }
        if (examples.empty() || (drop_last && static_cast<int64_t>(examples.size()) < batch_size)) return std::nullopt;
        return examples;
      }
      std::optional<BatchJob<Batch>> next() override {
        auto examples = read();
        if (!examples) return std::nullopt;
        auto held = std::make_shared<std::vector<Example>>(std::move(*examples));
        return BatchJob<Batch>([fn = collate, held] { return (*fn)(std::move(*held)); });
      }
      bool skip() override { return read().has_value(); }
    };
    auto jobs = std::make_unique<Jobs>();
    jobs->stream = dataset_->open(epoch);
    jobs->collate = collate_;
    jobs->batch_size = batch_size_;
    jobs->drop_last = drop_last_;
    return jobs;
  }
  int64_t size() const override {
    if (batches_per_epoch_) return *batches_per_epoch_;
    auto n = dataset_->size();
    if (!n) return -1;
    return drop_last_ ? *n / batch_size_ : (*n + batch_size_ - 1) / batch_size_;
  }
  bool iterable() const override { return true; }
  int64_t batch_size() const override { return batch_size_; }
  bool drop_last() const override { return drop_last_; }
  std::optional<int64_t> dataset_size() const override { return dataset_->size(); }
  std::shared_ptr<const BatchSource<Batch>> shard(const ShardSpec& s) const override {
    auto sharded = std::make_shared<IterableDatasetShard<Example>>(dataset_, batch_size_, drop_last_, s.num_processes,
                                                                   s.process_index, s.split_batches);
    const int64_t per_rank = s.split_batches ? batch_size_ / s.num_processes : batch_size_;
    auto out = std::make_shared<IterSource>(sharded, per_rank, drop_last_, collate_);
    // One batch per rank for each global batch of the stream.
    if (auto n = dataset_->size()) {
      const int64_t global = sharded->global_batch_size();
      out->batches_per_epoch_ = drop_last_ ? *n / global : (*n + global - 1) / global;
    }
    return out;
  }

 private:
  std::shared_ptr<const IterableDataset<Example>> dataset_;
  int64_t batch_size_;
  bool drop_last_;
  CollateFnHolder<Example, Batch> collate_;
  std::optional<int64_t> batches_per_epoch_;
};

}  // namespace accel::detail
