#pragma once
// DataLoader: batches of a dataset, in a range-for loop.
//
//   auto ds = std::make_shared<accel::TensorDataset>(accel::TensorDict{{"x", X}, {"y", Y}});
//   auto loader = accel::make_data_loader(ds, accel::DataLoaderOptions(32).shuffle(true).num_workers(2));
//   for (int epoch = 0; epoch < 3; ++epoch)
//     for (accel::TensorDict& batch : loader) train_step(batch);
//
// Each complete pass is one epoch; the epoch picks the shuffle (seed +
// epoch) and advances by itself when a pass ends (set_epoch overrides it).
// A loader runs one pass at a time; begin() restarts the current epoch.
//
// Prepared for distributed training (prepare_data_loader, prepare.h), the
// same loader yields this rank's share, on the device, and knows whether
// the batch in hand is the last one (end_of_dataloader) and how many rows
// of the last gathered batch are real (remainder): what gather_for_metrics
// (metrics.h) needs. state() / load_state() make it resumable.
#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "accel/data/batch.h"
#include "accel/data/collate.h"
#include "accel/data/dataset.h"
#include "accel/data/detail/dispatch.h"
#include "accel/data/detail/pipeline.h"
#include "accel/data/detail/source.h"
#include "accel/data/loader_observer.h"
#include "accel/data/loader_options.h"
#include "accel/data/loader_state.h"
#include "accel/util/check.h"

namespace accel {

template <class Batch>
class DataLoader {
 public:
  using batch_type = Batch;

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;

    Iterator() = default;
    Batch& operator*() const { return *loader_->current_; }
    Batch* operator->() const { return &*loader_->current_; }
    Iterator& operator++() {
      loader_->advance();
      if (!loader_->current_) loader_ = nullptr;
      return *this;
    }
    bool operator==(const Iterator& other) const { return loader_ == other.loader_; }

   private:
    friend class DataLoader;
    explicit Iterator(DataLoader* loader) : loader_(loader) {}
    DataLoader* loader_ = nullptr;
  };

  DataLoader(std::shared_ptr<const detail::BatchSource<Batch>> source, DataLoaderOptions options)
      : source_(std::move(source)), options_(std::move(options)) {
    total_batch_size_ = source_->batch_size();
    if (options_.persistent_workers()) pool_ = std::make_shared<WorkerPool>(options_.num_workers());
  }

  /// A copy shares the dataset and sampler and starts at the same epoch (and
  /// pending skip), not inside the pass the original may be running.
  DataLoader(const DataLoader& o)
      : source_(o.source_),
        options_(o.options_),
        pool_(o.pool_),
        device_(o.device_),
        non_blocking_(o.non_blocking_),
        dispatch_(o.dispatch_),
        total_batch_size_(o.total_batch_size_),
        total_length_(o.total_length_),
        observer_(o.observer_),
        cursor_(std::make_shared<detail::LoaderCursor>(
            detail::LoaderCursor{o.cursor_->epoch, 0, o.cursor_->pending_skip})) {}
  /// A moved loader keeps its progress and the handles that follow it.
  DataLoader(DataLoader&&) noexcept = default;
  DataLoader& operator=(const DataLoader&) = delete;

  /// Starts a pass over the current epoch (skipping what load_state or
  /// skip_first_batches asked to skip).
  Iterator begin() {
    start();
    return Iterator(current_ ? this : nullptr);
  }
  Iterator end() { return Iterator(); }

  /// Batches per epoch on this rank; -1 when the stream's length is unknown.
  int64_t size() const {
    const int64_t whole = source_->size();
    if (!dispatch_ || whole < 0) return whole;
    const int64_t p = dispatch_->num_processes;
    if (dispatch_->split_batches) return whole;
    return source_->drop_last() ? whole / p : (whole + p - 1) / p;
  }

  int64_t epoch() const { return cursor_->epoch; }
  /// The epoch of the next pass (Accelerate's set_epoch).
  void set_epoch(int64_t epoch) { cursor_->epoch = epoch; }

  /// Rows per step across all ranks (batch_size, times the ranks unless
  /// split_batches); -1 when batches vary.
  int64_t total_batch_size() const { return total_batch_size_; }
  bool end_of_dataloader() const { return end_of_dataloader_; }
  int64_t remainder() const {
    if (measured_remainder_) return *measured_remainder_;
    auto n = source_dataset_size();
    if (source_->drop_last() || !n || total_batch_size_ <= 0) return -1;
    return *n % total_batch_size_;
  }
  LoaderProgress progress() const { return {end_of_dataloader_, remainder()}; }

  /// Where this loader stands: inside a pass, the batches handed out so far
  /// (the one in hand included); between passes, position 0 of the next.
  LoaderState state() const { return state_handle().state(); }
  /// The next pass continues where `state` stood. Throws when `state` has a
  /// seed and this loader does not shuffle from one.
  void load_state(const LoaderState& state) { state_handle().load_state(state); }
  /// state() and load_state() of this loader, valid wherever it is moved
  /// (the Accelerator keeps one per prepared loader for its checkpoints).
  LoaderStateHandle state_handle() const {
    return LoaderStateHandle(
        [cursor = cursor_, source = source_] {
          auto s = source->sampler();
          return LoaderState{cursor->epoch, cursor->position, s ? s->seed() : std::nullopt};
        },
        [cursor = cursor_, source = source_](const LoaderState& state) {
          if (state.seed) {
            auto s = source->sampler();
            ACCEL_CHECK_ARG(s && s->seed(), "DataLoader::load_state: the state has seed ", *state.seed,
                            " but this loader is not shuffled from a seed");
            s->set_seed(*state.seed);
          }
          *cursor = detail::LoaderCursor{state.epoch, 0, state.position};
        });
  }
  /// The next pass starts after its first `n` batches.
  void skip_next(int64_t n) {
    ACCEL_CHECK_ARG(n >= 0, "DataLoader: cannot skip ", n, " batches (need >= 0)");
    cursor_->pending_skip = n;
  }

  /// How prepare_data_loader turns a loader into one rank's share.
  struct Distribution {
    std::shared_ptr<const detail::BatchSource<Batch>> source;
    std::optional<detail::DispatchSpec> dispatch;
    int64_t total_batch_size = -1;
    std::optional<int64_t> total_length;
    std::optional<torch::Device> device;
    bool non_blocking = false;
  };
  void distribute(Distribution d) {
    source_ = std::move(d.source);
    dispatch_ = d.dispatch;
    total_batch_size_ = d.total_batch_size;
    total_length_ = d.total_length;
    device_ = d.device;
    non_blocking_ = d.non_blocking;
  }

  /// Told of every pass and batch (the Accelerator's gradient state).
  void set_observer(std::shared_ptr<LoaderObserver> observer) { observer_ = std::move(observer); }

  bool iterable() const { return source_->iterable(); }
  const DataLoaderOptions& options() const { return options_; }
  std::optional<torch::Device> device() const { return device_; }
  const std::shared_ptr<const detail::BatchSource<Batch>>& source() const { return source_; }

 private:
  std::optional<int64_t> source_dataset_size() const { return total_length_ ? total_length_ : source_->dataset_size(); }

  std::unique_ptr<detail::EpochRun<Batch>> make_run(int64_t skip) {
    auto pipeline = [&](int64_t pipeline_skip) {
      std::shared_ptr<WorkerPool> pool = pool_;
      if (!pool && options_.num_workers() > 0) pool = std::make_shared<WorkerPool>(options_.num_workers());
      return std::make_unique<detail::Pipeline<Batch>>(source_->open(cursor_->epoch), pipeline_skip, std::move(pool),
                                                       options_.prefetch_factor(), options_.pin_memory());
    };
    if (!dispatch_) return pipeline(skip);
    if constexpr (TensorBatch<Batch>) {
      std::unique_ptr<detail::EpochRun<Batch>> inner;
      if (dispatch_->process_index == 0) inner = pipeline(0);
      return std::make_unique<detail::DispatchRun<Batch>>(std::move(inner), *dispatch_, source_->drop_last(),
                                                          device_.value_or(torch::kCPU), non_blocking_, skip);
    } else {
      fail<std::invalid_argument>("dispatch_batches needs a batch type with BatchTraits");
    }
  }

  // Pulls the next batch and starts its copy to the device, one batch ahead
  // of the consumer (so the end of the epoch is known while the last batch
  // is in hand).
  std::optional<Batch> fetch() {
    auto b = run_->next();
    if (b && device_ && !dispatch_) b = batch_to_device(std::move(*b), *device_, non_blocking_);
    return b;
  }

  void start() {
    run_.reset();
    current_.reset();
    next_.reset();
    const int64_t skip = std::exchange(cursor_->pending_skip, 0);
    cursor_->position = skip;
    end_of_dataloader_ = false;
    measured_remainder_.reset();
    run_ = make_run(skip);
    if (observer_) observer_->on_pass_begin(this);
    next_ = fetch();
    advance();
  }

  void advance() {
    current_ = std::move(next_);
    next_.reset();
    if (!current_) {
      run_.reset();
      ++cursor_->epoch;
      cursor_->position = 0;
      if (observer_) observer_->on_pass_end(this);
      return;
    }
    ++cursor_->position;
    next_ = fetch();
    if (!next_) {
      end_of_dataloader_ = true;
      measured_remainder_ = run_->measured_remainder();
    }
    if (observer_) observer_->on_batch(this, progress());
  }

  std::shared_ptr<const detail::BatchSource<Batch>> source_;
  DataLoaderOptions options_;
  std::shared_ptr<WorkerPool> pool_;
  std::optional<torch::Device> device_;
  bool non_blocking_ = false;
  std::optional<detail::DispatchSpec> dispatch_;
  int64_t total_batch_size_ = -1;
  std::optional<int64_t> total_length_;
  std::shared_ptr<LoaderObserver> observer_;

  // Shared with state handles; a copy gets its own (see the copy constructor).
  std::shared_ptr<detail::LoaderCursor> cursor_ = std::make_shared<detail::LoaderCursor>();
  bool end_of_dataloader_ = false;
  std::optional<int64_t> measured_remainder_;
  std::unique_ptr<detail::EpochRun<Batch>> run_;
  std::optional<Batch> current_, next_;
};

namespace detail {
template <class D>
using ExampleOf = typename D::example_type;

template <class Example, class Batch>
CollateFnHolder<Example, Batch> hold(CollateFn<Example, Batch> fn) {
  return std::make_shared<const CollateFn<Example, Batch>>(std::move(fn));
}

template <class Example, class Batch>
std::shared_ptr<const BatchSource<Batch>> map_source(std::shared_ptr<const Dataset<Example>> dataset,
                                                     const DataLoaderOptions& o, CollateFn<Example, Batch> fn) {
  std::shared_ptr<BatchSamplerBase> batches = o.batch_sampler();
  if (!batches) {
    std::shared_ptr<Sampler> order = o.sampler();
    if (!order && o.shuffle())
      order = std::make_shared<SeedableRandomSampler>(dataset->size(), o.seed().value_or(default_initial_seed()));
    if (!order) order = std::make_shared<SequentialSampler>(dataset->size());
    batches = std::make_shared<BatchSampler>(order, o.batch_size(), o.drop_last());
  }
  return std::make_shared<MapSource<Example, Batch>>(std::move(dataset), std::move(batches), hold(std::move(fn)));
}
}  // namespace detail

/// A loader over a map-style or iterable dataset with a collate function
/// (any callable std::vector<Example> -> Batch).
template <class D, class Collate>
auto make_data_loader(std::shared_ptr<D> dataset, DataLoaderOptions options, Collate collate) {
  using Example = detail::ExampleOf<D>;
  using Batch = std::invoke_result_t<Collate, std::vector<Example>>;
  ACCEL_CHECK_ARG(dataset, "make_data_loader: the dataset is null, expected one");
  CollateFn<Example, Batch> fn(std::move(collate));
  if constexpr (std::is_base_of_v<IterableDataset<Example>, D>) {
    options.validate(true);
    std::shared_ptr<const IterableDataset<Example>> ds = std::move(dataset);
    auto source = std::make_shared<detail::IterSource<Example, Batch>>(
        std::move(ds), options.batch_size(), options.drop_last(), detail::hold(std::move(fn)));
    return DataLoader<Batch>(std::move(source), std::move(options));
  } else {
    static_assert(std::is_base_of_v<Dataset<Example>, D>, "make_data_loader needs a Dataset or IterableDataset");
    options.validate(false);
    std::shared_ptr<const Dataset<Example>> ds = std::move(dataset);
    // The source first: an argument moved from `options` in the same call
    // may be constructed before map_source reads its sampler.
    auto source = detail::map_source(std::move(ds), options, std::move(fn));
    return DataLoader<Batch>(std::move(source), std::move(options));
  }
}

/// A loader whose batches are default_collate's (tensors stacked).
template <class D>
requires DefaultCollatable<detail::ExampleOf<D>>
auto make_data_loader(std::shared_ptr<D> dataset, DataLoaderOptions options = {}) {
  using Example = detail::ExampleOf<D>;
  return make_data_loader(std::move(dataset), std::move(options),
                          [](std::vector<Example> examples) { return default_collate(std::move(examples)); });
}

}  // namespace accel
