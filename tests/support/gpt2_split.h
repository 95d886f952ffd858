#pragma once
// The GPT-2 example's tensor-parallel split as the tests reassemble it,
// written from the names alone (independent of the library's own
// full_tensor_parallel_parameter, which the tests check against it).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "accel/dist/collectives.h"

namespace accel::testing {

/// Which dimension of a GPT-2 parameter the example's plan splits, and into
/// how many packed blocks (c_attn holds q, k and v); -1: replicated.
inline std::pair<int64_t, int64_t> gpt2_split_of(const std::string& name) {
  auto ends = [&](const char* s) { return name.ends_with(s); };
  if (ends("wte.weight")) return {0, 1};
  if (ends("c_attn.weight") || ends("c_attn.bias")) return {0, 3};
  if (ends("c_fc.weight") || ends("c_fc.bias")) return {0, 1};
  if (ends("c_proj.weight")) return {1, 1};
  return {-1, 1};
}

/// The whole tensor from every tp rank's slice: gathered along `dim`, then
/// each packed block's pieces put back together.
inline torch::Tensor reassemble(const torch::Tensor& mine, int64_t dim, int64_t packed, const ProcessGroupPtr& tp) {
  auto all = gather(mine.movedim(dim, 0).contiguous(), tp).chunk(tp->getSize(), 0);
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < packed; ++b)
    for (auto& piece : all) parts.push_back(piece.chunk(packed, 0)[b]);
  return torch::cat(parts, 0).movedim(0, dim);
}

}  // namespace accel::testing
