#pragma once
// IterableDatasetShard: one rank's part of a stream, exactly as
// Accelerate's. Every rank reads the whole stream and keeps its slice of
// each global batch:
//   - without split_batches a global batch is batch_size * num_processes
//     examples and rank r keeps examples [r*batch_size, (r+1)*batch_size);
//   - with split_batches a global batch is batch_size examples, cut into
//     num_processes pieces.
// A short last global batch is dropped under drop_last, else completed by
// repeating the first global batch (so every rank yields whole batches).
//
// 7 examples, batch 2, 2 ranks: rank 0 [0,1,4,5], rank 1 [2,3,6,0];
// split_batches: [0,2,4,6] and [1,3,5,0]; drop_last: [0,1] and [2,3].
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "accel/data/dataset.h"
#include "accel/util/check.h"

namespace accel {

template <class Example>
class IterableDatasetShard : public IterableDataset<Example> {
 public:
  IterableDatasetShard(std::shared_ptr<const IterableDataset<Example>> dataset, int64_t batch_size = 1,
                       bool drop_last = false, int num_processes = 1, int process_index = 0, bool split_batches = false)
      : dataset_(std::move(dataset)),
        batch_size_(batch_size),
        drop_last_(drop_last),
        num_processes_(num_processes),
        process_index_(process_index),
        split_batches_(split_batches) {
    ACCEL_CHECK_ARG(dataset_, "IterableDatasetShard: the dataset is null, expected one");
    ACCEL_CHECK_ARG(batch_size >= 1, "IterableDatasetShard: batch_size ", batch_size, " must be >= 1");
    ACCEL_CHECK_ARG(num_processes >= 1 && process_index >= 0 && process_index < num_processes,
                    "IterableDatasetShard: process_index ", process_index,
                    " must be in [0, num_processes=", num_processes, ")");
    // Accelerate lets batch_size 1 through here (each rank then gets nothing).
    ACCEL_CHECK_ARG(!split_batches || batch_size <= 1 || batch_size % num_processes == 0,
                    "IterableDatasetShard: with split_batches the batch size (", batch_size,
                    ") must be a multiple of num_processes (", num_processes, ")");
  }

  /// Examples this rank gets per global batch and in a global batch.
  int64_t process_batch_size() const { return split_batches_ ? batch_size_ / num_processes_ : batch_size_; }
  int64_t global_batch_size() const { return split_batches_ ? batch_size_ : batch_size_ * num_processes_; }

  /// The examples this rank yields, when the inner size is known. (Equal to
  /// Accelerate's __len__ without split_batches; with it, Accelerate's
  /// formula over-counts, this one is what the shard yields.)
  std::optional<int64_t> size() const override {
    auto n = dataset_->size();
    if (!n) return std::nullopt;
    const int64_t g = global_batch_size();
    return (drop_last_ ? *n / g : (*n + g - 1) / g) * process_batch_size();
  }

  const std::shared_ptr<const IterableDataset<Example>>& inner() const { return dataset_; }

  ExampleStream<Example> open(int64_t epoch) const override {
    struct Pass {
      ExampleStream<Example> source;
      std::vector<Example> current, first;
      std::vector<Example> ready;  // this rank's slice, handed out front to back
      size_t next = 0;
      bool done = false;
    };
    auto pass = std::make_shared<Pass>();
    pass->source = dataset_->open(epoch);
    const int64_t global = global_batch_size(), mine = process_batch_size();
    const int64_t begin = process_index_ * mine;
    const bool drop_last = drop_last_;
    return [pass, global, mine, begin, drop_last]() -> std::optional<Example> {
      auto take_slice = [&](const std::vector<Example>& batch) {
        pass->ready.assign(batch.begin() + begin, batch.begin() + begin + mine);
        pass->next = 0;
      };
      while (pass->next >= pass->ready.size()) {
        if (pass->done) return std::nullopt;
        auto example = pass->source();
        if (example) {
          pass->current.push_back(std::move(*example));
          if (static_cast<int64_t>(pass->current.size()) == global) {
            take_slice(pass->current);
            if (pass->first.empty()) pass->first = pass->current;
            pass->current.clear();
          }
          continue;
        }
        pass->done = true;
        if (drop_last || pass->current.empty()) return std::nullopt;
        if (pass->first.empty()) pass->first = pass->current;
        while (static_cast<int64_t>(pass->current.size()) < global)
          pass->current.insert(pass->current.end(), pass->first.begin(), pass->first.end());
        take_slice(pass->current);
      }
      return pass->ready[pass->next++];
    };
  }

 private:
  std::shared_ptr<const IterableDataset<Example>> dataset_;
  int64_t batch_size_;
  bool drop_last_;
  int num_processes_;
  int process_index_;
  bool split_batches_;
};

}  // namespace accel
