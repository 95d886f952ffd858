#include "sampling.h"

#include <limits>

#include <torch/torch.h>

#include "accel/util/check.h"

namespace gpt2 {

void check(const SamplingOptions& o) {
  ACCEL_CHECK_ARG(o.temperature() > 0, "sampling: temperature is ", o.temperature(), ", expected > 0");
  ACCEL_CHECK_ARG(o.top_k() >= 0, "sampling: top_k is ", o.top_k(), ", expected >= 0 (0: no top-k filtering)");
  ACCEL_CHECK_ARG(o.top_p() > 0 && o.top_p() <= 1, "sampling: top_p is ", o.top_p(),
                  ", expected in (0, 1] (1: no top-p filtering)");
}

torch::Tensor filter_logits(const torch::Tensor& logits, const SamplingOptions& o) {
  check(o);
  ACCEL_CHECK_ARG(logits.dim() == 2, "sampling: logits of shape ", logits.sizes(), ", expected [batch, vocab]");
  const float filtered = -std::numeric_limits<float>::infinity();
  auto scores = logits.to(torch::kFloat);
  if (o.temperature() != 1.0) scores = scores / o.temperature();
  if (o.top_k() != 0) {
    const int64_t k = std::min(o.top_k(), scores.size(-1));
    auto kth = std::get<0>(torch::topk(scores, k)).select(-1, k - 1).unsqueeze(-1);
    scores = scores.masked_fill(scores < kth, filtered);
  }
  if (o.top_p() < 1.0) {
    auto [sorted, order] = torch::sort(scores, /*dim=*/-1, /*descending=*/false);
    auto remove_sorted = sorted.softmax(-1).cumsum(-1) <= (1.0 - o.top_p());
    remove_sorted.select(-1, remove_sorted.size(-1) - 1).fill_(false);  // the most likely token stays
    auto remove = remove_sorted.scatter(-1, order, remove_sorted);
    scores = scores.masked_fill(remove, filtered);
  }
  return scores;
}

torch::Tensor sample(const torch::Tensor& scores, at::Generator& generator) {
  auto probs = torch::softmax(scores.to(torch::kCPU, torch::kFloat), -1);
  return torch::multinomial(probs, 1, /*replacement=*/false, generator).squeeze(-1).to(scores.device());
}

}  // namespace gpt2
