#pragma once
// The vocabulary split over a tensor-parallel group: each rank holds the
// embedding rows of its range of token ids (shard.h's vocab_range), for the
// input embedding and for an output projection tied to it.
//
// vocab_parallel_embedding: each rank looks up the ids in its range (the
// others give zeros) and the partial lookups are summed over the group.
//
// vocab_parallel_cross_entropy: the loss over logits that stay split along
// the vocabulary, never gathered: the largest logit, the sum of exponentials
// and the target's logit are each all-reduced (one number per token), and
// backward is softmax minus one-hot, computed locally on each rank's slice.
// Its value is torch's cross_entropy (mean over the targets that are not
// ignore_index) over the full logits.
//
//   auto h = model_body(tokens);                                    // replicated [B, T, C]
//   auto logits = F::linear(copy_to_tensor_parallel_region(h, tp), wte_shard);  // [B, T, V / tp]
//   auto loss = vocab_parallel_cross_entropy(logits, targets, begin, vocab_size, tp);
#include <cstdint>

#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include "accel/dist/collectives.h"
#include "accel/util/export.h"

namespace accel {

/// ids (int64, any shape) -> [.., dim], replicated. `weight` holds the rows
/// [vocab_begin, vocab_begin + weight.size(0)) of a vocabulary of
/// `vocab_size`. An id outside [0, vocab_size) is an error naming it.
ACCEL_API torch::Tensor vocab_parallel_embedding(const torch::Tensor& ids, const torch::Tensor& weight,
                                                 int64_t vocab_begin, int64_t vocab_size, const ProcessGroupPtr& group);

/// logits [.., V_rank] (this rank's vocabulary slice, starting at token
/// `vocab_begin` of `vocab_size`), targets [..] int64 -> the mean
/// cross-entropy over the targets that are not `ignore_index` (NaN when
/// every target is ignored, as torch's). A target outside [0, vocab_size)
/// other than ignore_index is an error naming it.
ACCEL_API torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                                     int64_t vocab_begin, int64_t vocab_size,
                                                     const ProcessGroupPtr& group, int64_t ignore_index = -100);

class ACCEL_API VocabParallelEmbeddingImpl : public torch::nn::Module {
 public:
  /// This rank's rows of `full` (vocab_range(num_embeddings, rank, tp)).
  VocabParallelEmbeddingImpl(const torch::nn::Embedding& full, ProcessGroupPtr group);
  torch::Tensor forward(const torch::Tensor& ids);

  int64_t vocab_begin() const { return begin_; }
  int64_t vocab_size() const { return vocab_size_; }

  torch::Tensor weight;

 private:
  ProcessGroupPtr group_;
  int64_t begin_ = 0, vocab_size_ = 0;
};
TORCH_MODULE(VocabParallelEmbedding);

}  // namespace accel
