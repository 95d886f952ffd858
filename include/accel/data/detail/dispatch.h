#pragma once
// Internal: Accelerate's DataLoaderDispatcher as one epoch run.
//
// Rank 0 reads the unsharded loader: without split_batches it takes
// num_processes batches and joins them, with split_batches one batch. It
// tells the others whether data is left and the shapes they must allocate,
// broadcasts the batch on the device, and every rank keeps its slice
// [rank*b, (rank+1)*b) where b = batch rows / num_processes. A last batch
// whose rows do not divide is completed with the first num_processes rows
// of the epoch (unless drop_last; repeated when the epoch has fewer rows
// than ranks, where Accelerate would leave a rank empty), and the real row
// count of that last
// global batch becomes the remainder gather_for_metrics uses.
//
// The order of collectives is the same on every rank; skipped batches
// (resume) still go through the protocol, as in Accelerate, so that the
// rows used to complete the last batch are the same as without the skip.
#include <memory>
#include <optional>
#include <string>

#include "accel/data/batch.h"
#include "accel/data/detail/pipeline.h"
#include "accel/dist/collectives.h"

namespace accel::detail {

struct DispatchSpec {
  int num_processes = 1;
  int process_index = 0;
  bool split_batches = false;
};

template <TensorBatch Batch>
class DispatchRun : public EpochRun<Batch> {
 public:
  /// `inner` reads the unsharded loader; only rank 0 has one (null elsewhere).
  DispatchRun(std::unique_ptr<EpochRun<Batch>> inner, DispatchSpec spec, bool drop_last, torch::Device device,
              bool non_blocking, int64_t skip)
      : inner_(std::move(inner)),
        spec_(spec),
        drop_last_(drop_last),
        device_(device),
        non_blocking_(non_blocking),
        skip_(skip) {}

  std::optional<Batch> next() override {
    while (!finished_) {
      if (!started_) {
        started_ = true;
        pending_ = fetch();
      }
      Fetched current = std::move(pending_);
      if (!current.description) {  // nothing at all to read this epoch
        finished_ = true;
        break;
      }
      Batch batch = receive(current);
      if (!drop_last_ && !first_rows_)  // a copy: the user may modify the first batch in place
        first_rows_ =
            map_tensors(slice_batch(batch, 0, spec_.num_processes), [](const torch::Tensor& t) { return t.clone(); });
      const int64_t observed = batch_size_of(batch);
      int64_t rows = observed / spec_.num_processes;
      bool last = stopped_;
      if (!last) {
        pending_ = fetch();
        if (stopped_ && !pending_.description) last = true;
      }
      if (!drop_last_ && last && observed % spec_.num_processes != 0) {
        rows += 1;
        // Accelerate appends the first rows once; with fewer rows in the
        // whole epoch than ranks that leaves some rank empty, so repeat them.
        std::vector<Batch> parts{batch};
        for (int64_t have = observed; have < rows * spec_.num_processes; have += batch_size_of(*first_rows_))
          parts.push_back(*first_rows_);
        batch = concat_batches(parts);
      }
      batch = slice_batch(batch, spec_.process_index * rows, (spec_.process_index + 1) * rows);
      if (last) {
        finished_ = true;
        remainder_ = observed;
      }
      if (index_++ >= skip_) return batch;
    }
    return std::nullopt;
  }

  std::optional<int64_t> measured_remainder() const override { return remainder_; }

 private:
  struct Fetched {
    std::optional<Batch> batch;              // rank 0 only
    std::optional<std::string> description;  // shapes to allocate; none: no data
  };

  bool is_main() const { return spec_.process_index == 0; }

  // Rank 0's answer "stopped?, description?" reaches every rank.
  void share(bool& stopped, std::optional<std::string>& description) {
    std::string msg =
        is_main() ? std::string(stopped ? "1" : "0") + (description ? "1" + *description : "0") : std::string();
    msg = broadcast_object(msg, 0);
    stopped = msg.at(0) == '1';
    description = msg.at(1) == '1' ? std::optional<std::string>(msg.substr(2)) : std::nullopt;
  }

  Fetched fetch() {
    Fetched out;
    std::vector<Batch> parts;
    bool stopped = false;
    if (is_main()) {
      const int want = spec_.split_batches ? 1 : spec_.num_processes;
      for (int i = 0; i < want; ++i) {
        auto b = inner_->next();
        if (!b) {
          stopped = true;
          break;
        }
        parts.push_back(std::move(*b));
      }
      if (!stopped) out.batch = parts.size() == 1 ? parts[0] : concat_batches(parts);
      if (out.batch) out.description = describe(*out.batch);
    }
    share(stopped, out.description);
    stopped_ = stopped;
    // A partial round is still data when the short batches are kept.
    if (stopped_ && !spec_.split_batches && !drop_last_) {
      if (is_main() && !parts.empty()) {
        out.batch = concat_batches(parts);
        out.description = describe(*out.batch);
      } else {
        out.description.reset();
      }
      bool ignored = true;
      share(ignored, out.description);
    }
    return out;
  }

  static std::string describe(const Batch& b) {
    return describe_tensors(BatchTraits<Batch>::names(b), BatchTraits<Batch>::tensors(b));
  }

  Batch receive(Fetched& f) {
    std::vector<std::string> names;
    std::vector<torch::Tensor> tensors;
    if (is_main()) {
      auto on_device = batch_to_device(std::move(*f.batch), device_, non_blocking_);
      names = BatchTraits<Batch>::names(on_device);
      tensors = BatchTraits<Batch>::tensors(on_device);
    } else {
      tensors = allocate_described(*f.description, device_, names);
    }
    for (auto& t : tensors) {
      if (!t.is_contiguous()) t = t.contiguous();
      broadcast(t, 0);
    }
    return BatchTraits<Batch>::rebuild(names, std::move(tensors));
  }

  std::unique_ptr<EpochRun<Batch>> inner_;
  DispatchSpec spec_;
  bool drop_last_;
  torch::Device device_;
  bool non_blocking_;
  int64_t skip_;

  bool started_ = false, finished_ = false, stopped_ = false;
  Fetched pending_;
  std::optional<Batch> first_rows_;
  int64_t index_ = 0;
  std::optional<int64_t> remainder_;
};

}  // namespace accel::detail
