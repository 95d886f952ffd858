#include "accel/parallel/context/sequence_shard.h"

#include <vector>

#include <torch/torch.h>

#include "accel/util/check.h"

namespace accel {
namespace {

// The number of equal chunks the sequence is cut into, checked.
int64_t chunk_count(int64_t length, int64_t size, int64_t rank, bool load_balance) {
  ACCEL_CHECK_ARG(size >= 1, "context parallel: the group size must be at least 1, got ", size);
  ACCEL_CHECK_ARG(0 <= rank && rank < size, "context parallel: rank ", rank, " is not in a group of ", size);
  const int64_t chunks = load_balance ? 2 * size : size;
  ACCEL_CHECK_ARG(length % chunks == 0, "context parallel: a sequence of ", length, " tokens does not divide by ",
                  load_balance ? "2 * cp_size = " : "cp_size = ", chunks,
                  load_balance ? " (the load-balanced split cuts it into 2 chunks per rank)" : "");
  return chunks;
}

}  // namespace

torch::Tensor context_parallel_positions(int64_t length, int64_t size, int64_t rank, bool load_balance,
                                         const torch::TensorOptions& options) {
  const int64_t chunk = length / chunk_count(length, size, rank, load_balance);
  auto o = options.dtype(torch::kLong);
  if (!load_balance) return torch::arange(rank * chunk, (rank + 1) * chunk, o);
  const int64_t late = 2 * size - 1 - rank;
  return torch::cat(
      {torch::arange(rank * chunk, (rank + 1) * chunk, o), torch::arange(late * chunk, (late + 1) * chunk, o)});
}

torch::Tensor shard_sequence(const torch::Tensor& tensor, int64_t seq_dim, int64_t size, int64_t rank,
                             bool load_balance) {
  ACCEL_CHECK_ARG(tensor.defined() && tensor.dim() >= 1, "context parallel: cannot shard a tensor with no dimensions");
  const int64_t dim = c10::maybe_wrap_dim(seq_dim, tensor.dim());
  const int64_t length = tensor.size(dim);
  const int64_t chunk = length / chunk_count(length, size, rank, load_balance);
  if (!load_balance) return tensor.narrow(dim, rank * chunk, chunk).contiguous();
  const int64_t late = 2 * size - 1 - rank;
  return torch::cat({tensor.narrow(dim, rank * chunk, chunk), tensor.narrow(dim, late * chunk, chunk)}, dim);
}

torch::Tensor unshard_sequence(const torch::Tensor& part, int64_t seq_dim, const ProcessGroupPtr& group,
                               bool load_balance) {
  ACCEL_CHECK_ARG(part.defined() && part.dim() >= 1, "context parallel: cannot unshard a tensor with no dimensions");
  if (!group || group->getSize() == 1) return part;
  const int64_t size = group->getSize();
  const int64_t dim = c10::maybe_wrap_dim(seq_dim, part.dim());
  ACCEL_CHECK_ARG(!load_balance || part.size(dim) % 2 == 0, "context parallel: a load-balanced part holds two equal ",
                  "chunks, but its sequence dimension has ", part.size(dim), " entries");
  // gather concatenates along dim 0 in group-rank order.
  auto parts = gather(part.movedim(dim, 0).contiguous(), group).chunk(size, 0);
  std::vector<torch::Tensor> ordered;
  if (!load_balance) {
    ordered.assign(parts.begin(), parts.end());
  } else {
    // Global chunk j < size is rank j's first half; chunk j >= size is
    // rank 2 * size - 1 - j's second half.
    for (int64_t j = 0; j < 2 * size; ++j) {
      const bool early = j < size;
      ordered.push_back(parts[early ? j : 2 * size - 1 - j].chunk(2, 0)[early ? 0 : 1]);
    }
  }
  return torch::cat(ordered, 0).movedim(0, dim).contiguous();
}

}  // namespace accel
