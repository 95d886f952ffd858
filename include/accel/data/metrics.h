#pragma once
// gather_for_metrics: every rank's predictions for the batch in hand,
// gathered, without the samples that were repeated to even out the last
// batch. Over a whole prepared loader the gathered rows are then exactly
// the dataset's samples, each once, in the loader's order:
//
//   for (auto& batch : loader) {
//     auto preds = model(batch["x"]).argmax(1);
//     all_preds.push_back(accel::gather_for_metrics(preds, loader));
//   }
//
// Rule (Accelerate's): at the last batch of the epoch, keep the first
// `remainder` gathered rows when remainder > 0. Every rank must hold
// tensors of the same shape (the default even_batches gives that).
#include "accel/data/data_loader.h"
#include "accel/dist/collectives.h"
#include "accel/util/export.h"

namespace accel {

/// Drops the repeated rows of an already gathered tensor (dim 0).
ACCEL_API torch::Tensor drop_duplicates(const torch::Tensor& gathered, const LoaderProgress& progress);

ACCEL_API torch::Tensor gather_for_metrics(const torch::Tensor& tensor, const LoaderProgress& progress,
                                           const ProcessGroupPtr& group = {});
/// Each tensor of the dict, gathered and cut the same way.
ACCEL_API TensorDict gather_for_metrics(const TensorDict& tensors, const LoaderProgress& progress,
                                        const ProcessGroupPtr& group = {});

template <class Batch, class T>
auto gather_for_metrics(const T& tensors, const DataLoader<Batch>& loader, const ProcessGroupPtr& group = {}) {
  return gather_for_metrics(tensors, loader.progress(), group);
}

}  // namespace accel
