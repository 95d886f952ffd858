#pragma once
// torch::data datasets in accel's loaders, so that a LibTorch team's data
// pipeline is prepared as it is, not ported first:
//
//   auto ds = MyDataset(root).map(my_example_transform).map(torch::data::transforms::Stack<>());
//   auto loader = accel::make_data_loader(std::move(ds), accel::DataLoaderOptions(32).shuffle(true));
//   auto [model, optimizer, train] = accelerator.prepare(net, adamw, loader);
//   for (torch::data::Example<>& batch : train) ... batch.data, batch.target
//
// accel's sampler picks the indices (shuffled with accel's seed, sharded
// across processes, the last batch evened out as Accelerate does); each
// batch is then the dataset's own get_batch(indices), so its transforms,
// and Stack's collation, run exactly as under torch::data's own loader.
// The dataset must be map-style (its size() known; stateful/chunk datasets
// are refused) and get_batch must be safe to call from several threads at
// once with num_workers > 0 (as under torch::data's loader, which shares a
// stateless dataset between its workers).
//
// A torch::data loader (torch::data::make_data_loader's result) hides its
// dataset, so it cannot be prepared: pass the dataset here instead.
#include <concepts>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include <torch/data/datasets/base.h>
#include <torch/data/example.h>

#include "accel/data/batch.h"
#include "accel/data/data_loader.h"
#include "accel/util/check.h"

namespace accel {

/// A map-style torch::data dataset (possibly .map()ped): batches by index lists.
template <class D>
concept TorchMapDataset = requires(D& d, c10::ArrayRef<size_t> indices) {
  d.get_batch(indices);
  { d.size() } -> std::convertible_to<std::optional<size_t>>;
  requires std::same_as<typename D::BatchRequestType, c10::ArrayRef<size_t>>;
};

/// torch::data's Example<Tensor, Tensor> (what Stack<> makes) as a batch:
/// tensors "data" and "target".
template <>
struct BatchTraits<torch::data::Example<>> {
  static constexpr bool has_tensors = true;
  static std::vector<torch::Tensor> tensors(const torch::data::Example<>& b) { return {b.data, b.target}; }
  static std::vector<std::string> names(const torch::data::Example<>&) { return {"data", "target"}; }
  static torch::data::Example<> rebuild(const std::vector<std::string>&, std::vector<torch::Tensor> ts) {
    return {std::move(ts.at(0)), std::move(ts.at(1))};
  }
};

/// A loader over a torch::data dataset; batches are its get_batch(indices).
template <TorchMapDataset D>
auto make_data_loader(D dataset, DataLoaderOptions options) {
  const std::optional<size_t> size = dataset.size();
  ACCEL_CHECK_ARG(size.has_value(),
                  "make_data_loader: the torch::data dataset does not know its size (a stateful or chunk dataset?); "
                  "expected a map-style dataset");
  auto shared = std::make_shared<D>(std::move(dataset));
  using Batch = decltype(shared->get_batch(c10::ArrayRef<size_t>{}));
  // The samplers and sharding work on indices; the dataset turns a batch of
  // them into its batch, transforms included.
  auto indices = make_dataset(static_cast<int64_t>(*size), [](int64_t i) { return i; });
  return make_data_loader(std::move(indices), std::move(options), [shared](std::vector<int64_t> picked) -> Batch {
    std::vector<size_t> request(picked.begin(), picked.end());
    return shared->get_batch(request);
  });
}

}  // namespace accel
