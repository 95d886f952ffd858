#pragma once
// Internal to context parallel: attention of a block of queries over a
// block of keys that also yields the log-sum-exp of each query's scores,
// so that partial results over different key blocks can be merged.
#include <utility>

#include <torch/types.h>

namespace accel::context_detail {

/// out = softmax(q k^T * scale, masked) v and lse = logsumexp of the masked
/// scores per query, differentiable in q, k and v through both outputs.
/// `visible` is a bool [q_len, k_len] on the CPU (true: the query sees the
/// key) or undefined (every key visible). A query that sees no key of the block
/// gets out = 0 and lse = -inf, and contributes nothing to any gradient.
std::pair<torch::Tensor, torch::Tensor> block_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                        const torch::Tensor& v, const torch::Tensor& visible,
                                                        double scale);

}  // namespace accel::context_detail
