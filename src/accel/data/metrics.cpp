#include "accel/data/metrics.h"

namespace accel {

torch::Tensor drop_duplicates(const torch::Tensor& gathered, const LoaderProgress& progress) {
  if (!progress.end_of_dataloader || progress.remainder <= 0) return gathered;
  return gathered.slice(0, 0, std::min<int64_t>(progress.remainder, gathered.size(0)));
}

torch::Tensor gather_for_metrics(const torch::Tensor& tensor, const LoaderProgress& progress,
                                 const ProcessGroupPtr& group) {
  return drop_duplicates(gather(tensor, group), progress);
}

TensorDict gather_for_metrics(const TensorDict& tensors, const LoaderProgress& progress, const ProcessGroupPtr& group) {
  TensorDict out;
  for (const auto& [name, t] : tensors) out.emplace(name, gather_for_metrics(t, progress, group));
  return out;
}

}  // namespace accel
