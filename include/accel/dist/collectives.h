#pragma once
// Collectives for user code, with Accelerate's meanings. Each takes the
// process group of accel::state() unless one is given, and is the identity
// (or a copy) in a single process. Tensors go through the backend of their
// device (Gloo for CPU, NCCL for CUDA); objects always travel as CPU bytes.
#include <functional>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

using ProcessGroupPtr = c10::intrusive_ptr<c10d::ProcessGroup>;

enum class ReduceOp { sum, mean, max, min, product };

/// All ranks' tensors (equal shapes) concatenated on dim 0, in rank order.
/// A 0-d tensor counts as shape [1], as in Accelerate.
ACCEL_API torch::Tensor gather(const torch::Tensor& tensor, const ProcessGroupPtr& group = {});

/// All-reduce into a new tensor ("reduce" in Accelerate is an all-reduce).
/// `mean` divides the sum by the world size.
ACCEL_API torch::Tensor reduce(const torch::Tensor& tensor, ReduceOp op = ReduceOp::mean,
                               const ProcessGroupPtr& group = {});

/// All-reduce in place.
ACCEL_API void all_reduce_(torch::Tensor& tensor, ReduceOp op = ReduceOp::sum, const ProcessGroupPtr& group = {});

/// Rank `src`'s tensor on every rank (in place; also returned).
ACCEL_API torch::Tensor broadcast(torch::Tensor tensor, int src = 0, const ProcessGroupPtr& group = {});

/// Pads dim `dim` with `pad_index` up to the largest size across ranks
/// (at the end, or at the start with pad_first). Other dims must agree.
ACCEL_API torch::Tensor pad_across_processes(const torch::Tensor& tensor, int64_t dim = 0, double pad_index = 0,
                                             bool pad_first = false, const ProcessGroupPtr& group = {});

/// Every rank's bytes, in rank order (sizes may differ).
ACCEL_API std::vector<std::string> gather_object(const std::string& bytes, const ProcessGroupPtr& group = {});
/// Rank `src`'s bytes on every rank.
ACCEL_API std::string broadcast_object(const std::string& bytes, int src = 0, const ProcessGroupPtr& group = {});

/// Blocks until every rank has reached it.
ACCEL_API void wait_for_everyone(const ProcessGroupPtr& group = {});

/// Runs `fn` on the main process first, then on the others (e.g. a download
/// or a cache build the others then reuse).
ACCEL_API void main_process_first(const std::function<void()>& fn);
/// Same, per node: the local main process first.
ACCEL_API void local_main_process_first(const std::function<void()>& fn);
/// Runs `fn` on the main process only.
ACCEL_API void on_main_process(const std::function<void()>& fn);
/// Runs `fn` on each node's local main process only.
ACCEL_API void on_local_main_process(const std::function<void()>& fn);

/// The [begin, end) slice of `length` items this rank gets under
/// Accelerate's split_between_processes: the first `length % world` ranks
/// get one extra item.
ACCEL_API std::pair<int64_t, int64_t> split_range(int64_t length, int rank, int world_size);

/// This rank's share of `items` (Accelerate's split_between_processes).
/// With `apply_padding`, every rank gets the same count, padded with the
/// last item, so the results can be gathered.
template <class T>
std::vector<T> split_between_processes(const std::vector<T>& items, bool apply_padding = false);

/// The same for the rows (dim 0) of a tensor.
ACCEL_API torch::Tensor split_between_processes(const torch::Tensor& items, bool apply_padding = false);

}  // namespace accel

#include "accel/dist/split_between_processes.inl"
