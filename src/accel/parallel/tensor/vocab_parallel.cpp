#include "accel/parallel/tensor/vocab_parallel.h"

#include <limits>

#include <torch/autograd.h>

#include "accel/parallel/tensor/regions.h"
#include "accel/parallel/tensor/shard.h"
#include "accel/util/check.h"

namespace accel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_ids(const torch::Tensor& ids, int64_t vocab_size, int64_t ignore_index, const char* what) {
  ACCEL_CHECK_ARG(ids.scalar_type() == torch::kLong, what, ": token ids must be int64, got ", ids.scalar_type());
  if (ids.numel() == 0) return;
  auto bad = (ids < 0) | (ids >= vocab_size);
  if (ignore_index < 0 || ignore_index >= vocab_size) bad &= ids != ignore_index;
  if (bad.any().item<bool>()) {
    const int64_t id = ids.masked_select(bad)[0].item<int64_t>();
    fail(what, ": token id ", id, " is outside the vocabulary [0, ", vocab_size, ")");
  }
}

void all_reduce(torch::Tensor& t, const ProcessGroupPtr& group, c10d::ReduceOp op) {
  if (!group || group->getSize() == 1) return;
  std::vector<torch::Tensor> ts{t};
  c10d::AllreduceOptions opts;
  opts.reduceOp = op;
  group->allreduce(ts, opts)->wait();
}

struct VocabParallelCrossEntropy : torch::autograd::Function<VocabParallelCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& targets,
                               int64_t begin, int64_t ignore_index, const ProcessGroupPtr& group) {
    const int64_t local = logits.size(-1);
    // In float32 at least, as torch's cross_entropy accumulates.
    auto x = logits.detach().to(at::promote_types(logits.scalar_type(), torch::kFloat));
    auto max = std::get<0>(x.max(-1, /*keepdim=*/true)).contiguous();
    all_reduce(max, group, c10d::ReduceOp::MAX);
    auto shifted = x - max;
    auto exp = shifted.exp();
    auto sum_exp = exp.sum(-1).contiguous();
    all_reduce(sum_exp, group, c10d::ReduceOp::SUM);
    const auto mine = (targets >= begin) & (targets < begin + local);
    const auto index = torch::where(mine, targets - begin, torch::zeros_like(targets)).unsqueeze(-1);
    auto target_logit = (shifted.gather(-1, index).squeeze(-1) * mine).contiguous();
    all_reduce(target_logit, group, c10d::ReduceOp::SUM);
    const auto valid = targets != ignore_index;
    const auto count = valid.sum();
    auto loss = ((sum_exp.log() - target_logit) * valid).sum() / count;
    ctx->save_for_backward({exp / sum_exp.unsqueeze(-1), index, mine, valid, count});
    ctx->saved_data["dtype"] = logits.scalar_type();
    return loss.to(logits.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto& softmax = saved[0];
    const auto &index = saved[1], &mine = saved[2], &valid = saved[3], &count = saved[4];
    // d loss / d logit = (softmax - onehot(target)) / count for each valid token.
    auto grad = softmax.scatter_add(-1, index, -mine.unsqueeze(-1).to(softmax.scalar_type()));
    grad = grad * (valid.unsqueeze(-1).to(grad.scalar_type()) * (grads[0].to(grad.scalar_type()) / count));
    return {grad.to(ctx->saved_data.at("dtype").toScalarType()), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor vocab_parallel_embedding(const torch::Tensor& ids, const torch::Tensor& weight, int64_t vocab_begin,
                                       int64_t vocab_size, const ProcessGroupPtr& group) {
  check_ids(ids, vocab_size, std::numeric_limits<int64_t>::min(), "vocab_parallel_embedding");
  const auto mine = (ids >= vocab_begin) & (ids < vocab_begin + weight.size(0));
  auto local = torch::embedding(weight, torch::where(mine, ids - vocab_begin, torch::zeros_like(ids)));
  // Zeros for the ids another rank holds: the sum over ranks is then each id's row.
  local = local * mine.unsqueeze(-1).to(local.scalar_type());
  return reduce_from_tensor_parallel_region(local, group);
}

torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                           int64_t vocab_begin, int64_t vocab_size, const ProcessGroupPtr& group,
                                           int64_t ignore_index) {
  ACCEL_CHECK_ARG(logits.dim() >= 1 && targets.sizes() == logits.sizes().slice(0, logits.dim() - 1),
                  "vocab_parallel_cross_entropy: targets of shape ", targets.sizes(), " for logits of shape ",
                  logits.sizes(), " (expected the logits' shape without the last dimension)");
  check_ids(targets, vocab_size, ignore_index, "vocab_parallel_cross_entropy");
  return VocabParallelCrossEntropy::apply(logits, targets, vocab_begin, ignore_index, group);
}

VocabParallelEmbeddingImpl::VocabParallelEmbeddingImpl(const torch::nn::Embedding& full, ProcessGroupPtr group)
    : group_(std::move(group)), vocab_size_(full->weight.size(0)) {
  const int rank = group_ ? group_->getRank() : 0, size = group_ ? group_->getSize() : 1;
  const auto [begin, end] = vocab_range(vocab_size_, rank, size);
  begin_ = begin;
  torch::NoGradGuard no_grad;
  weight = register_parameter("weight", full->weight.narrow(0, begin, end - begin).clone());
}

torch::Tensor VocabParallelEmbeddingImpl::forward(const torch::Tensor& ids) {
  return vocab_parallel_embedding(ids, weight, begin_, vocab_size_, group_);
}

}  // namespace accel
