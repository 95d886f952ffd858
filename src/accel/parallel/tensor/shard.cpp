#include "accel/parallel/tensor/shard.h"

#include "accel/dist/collectives.h"
#include "accel/util/check.h"

namespace accel {

torch::Tensor shard_dim(const torch::Tensor& full, int64_t dim, int rank, int size, int64_t packed,
                        const std::string& what) {
  ACCEL_CHECK_ARG(size >= 1 && rank >= 0 && rank < size, what, ": rank ", rank, " of a tensor-parallel size ", size);
  ACCEL_CHECK_ARG(packed >= 1, what, ": packed blocks must be at least 1, got ", packed);
  ACCEL_CHECK_ARG(dim >= 0 && dim < full.dim(), what, ": no dimension ", dim, " in a tensor of shape ", full.sizes());
  const int64_t n = full.size(dim);
  ACCEL_CHECK_ARG(n % (packed * size) == 0, what, ": dimension ", dim, " of size ", n, " does not split into ", packed,
                  packed == 1 ? " block" : " blocks", " over a tensor-parallel size of ", size,
                  " (expected a multiple of ", packed * size, ")");
  const int64_t block = n / packed, piece = block / size;
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < packed; ++b) parts.push_back(full.narrow(dim, b * block + rank * piece, piece));
  return torch::cat(parts, dim).contiguous();
}

torch::Tensor unshard_dim(const std::vector<torch::Tensor>& pieces, int64_t dim, int64_t packed) {
  ACCEL_CHECK_ARG(!pieces.empty(), "unshard_dim: no pieces");
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < packed; ++b)
    for (const auto& p : pieces) {
      const int64_t piece = p.size(dim) / packed;
      parts.push_back(p.narrow(dim, b * piece, piece));
    }
  return torch::cat(parts, dim);
}

std::pair<int64_t, int64_t> vocab_range(int64_t vocab_size, int rank, int size) {
  ACCEL_CHECK_ARG(vocab_size >= size, "a vocabulary of ", vocab_size, " tokens cannot be split over ", size,
                  " tensor-parallel ranks (expected at least one token per rank)");
  return split_range(vocab_size, rank, size);
}

}  // namespace accel
