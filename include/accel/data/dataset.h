#pragma once
// Datasets: where examples come from.
//
// A map-style dataset knows its size and returns example i on demand; the
// loader decides the order (sampler) and may call get() from several worker
// threads at once, so get() must be safe to call concurrently (it is const).
//
// An iterable (streaming) dataset yields its examples in its own order; it
// has no random access. open(epoch) starts a fresh pass: a dataset that
// shuffles itself should derive its order from the epoch so that every rank
// (and a resumed run) sees the same stream.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <torch/types.h>

#include "accel/util/check.h"
#include "accel/util/export.h"

namespace accel {

/// A batch or example made of named tensors ("input_ids", "labels", ...).
using TensorDict = std::map<std::string, torch::Tensor>;

template <class Example>
class Dataset {
 public:
  using example_type = Example;
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  /// Example `index`, 0 <= index < size(). Called from worker threads.
  virtual Example get(int64_t index) const = 0;
};

/// One pass over a stream: each call returns the next example, or nullopt
/// at the end.
template <class Example>
using ExampleStream = std::function<std::optional<Example>()>;

template <class Example>
class IterableDataset {
 public:
  using example_type = Example;
  virtual ~IterableDataset() = default;
  /// Starts a pass over the stream for `epoch`.
  virtual ExampleStream<Example> open(int64_t epoch) const = 0;
  /// The number of examples in a pass, when known (it lets the loader report
  /// its length and the remainder that gather_for_metrics drops).
  virtual std::optional<int64_t> size() const { return std::nullopt; }
};

/// A map-style dataset from a size and a function (handy for synthetic data
/// and tests). `fn` must be safe to call from several threads.
template <class Example>
class LambdaDataset : public Dataset<Example> {
 public:
  LambdaDataset(int64_t size, std::function<Example(int64_t)> fn) : size_(size), fn_(std::move(fn)) {
    ACCEL_CHECK_ARG(size >= 0, "LambdaDataset: size ", size, " must be >= 0");
  }
  int64_t size() const override { return size_; }
  Example get(int64_t index) const override { return fn_(index); }

 private:
  int64_t size_;
  std::function<Example(int64_t)> fn_;
};

template <class Fn>
auto make_dataset(int64_t size, Fn fn) {
  using Example = std::invoke_result_t<Fn, int64_t>;
  return std::make_shared<LambdaDataset<Example>>(size, std::function<Example(int64_t)>(std::move(fn)));
}

/// An iterable dataset from a function that opens a pass for an epoch.
template <class Example>
class LambdaIterableDataset : public IterableDataset<Example> {
 public:
  explicit LambdaIterableDataset(std::function<ExampleStream<Example>(int64_t)> open,
                                 std::optional<int64_t> size = std::nullopt)
      : open_(std::move(open)), size_(size) {}
  ExampleStream<Example> open(int64_t epoch) const override { return open_(epoch); }
  std::optional<int64_t> size() const override { return size_; }

 private:
  std::function<ExampleStream<Example>(int64_t)> open_;
  std::optional<int64_t> size_;
};

/// Rows of named tensors that share their first dimension: example i is
/// {name: tensor[i]} for every name (PyTorch's TensorDataset, with names).
class ACCEL_API TensorDataset : public Dataset<TensorDict> {
 public:
  explicit TensorDataset(TensorDict columns);
  int64_t size() const override { return size_; }
  TensorDict get(int64_t index) const override;

 private:
  TensorDict columns_;
  int64_t size_ = 0;
};

}  // namespace accel
