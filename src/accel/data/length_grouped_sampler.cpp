// Transformers' get_length_grouped_indices, step for step.
#include "accel/data/length_grouped_sampler.h"

#include <algorithm>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "accel/util/check.h"

namespace accel {

Indices get_length_grouped_indices(const std::vector<int64_t>& lengths, int64_t batch_size,
                                   std::optional<int64_t> mega_batch_mult, at::Generator generator) {
  ACCEL_CHECK_ARG(batch_size >= 1, "get_length_grouped_indices: batch_size = ", batch_size, ", expected >= 1");
  const auto n = static_cast<int64_t>(lengths.size());
  if (n == 0) return {};
  const int64_t mult = mega_batch_mult.value_or(std::max<int64_t>(std::min<int64_t>(n / (batch_size * 4), 50), 1));
  ACCEL_CHECK_ARG(mult >= 1, "get_length_grouped_indices: mega_batch_mult = ", mult, ", expected >= 1");
  auto perm = torch::randperm(n, generator, torch::kLong).contiguous();
  const int64_t* p = perm.data_ptr<int64_t>();
  Indices out(p, p + n);
  const int64_t megabatch = mult * batch_size;
  // Each megabatch longest first; ties keep their order (Python's sort is stable).
  std::vector<int64_t> starts;
  for (int64_t s = 0; s < n; s += megabatch) {
    starts.push_back(s);
    std::stable_sort(out.begin() + s, out.begin() + std::min(n, s + megabatch),
                     [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  }
  // The first megabatch whose head is the longest (argmax takes the first
  // of equal maxima) gives its head to the front.
  size_t longest = 0;
  for (size_t m = 1; m < starts.size(); ++m)
    if (lengths[out[starts[m]]] > lengths[out[starts[longest]]]) longest = m;
  std::swap(out[0], out[starts[longest]]);
  return out;
}

LengthGroupedSampler::LengthGroupedSampler(std::vector<int64_t> lengths, int64_t batch_size, uint64_t seed,
                                           bool reshuffle_each_epoch)
    : lengths_(std::move(lengths)), batch_size_(batch_size), seed_(seed), reshuffle_each_epoch_(reshuffle_each_epoch) {
  ACCEL_CHECK_ARG(batch_size >= 1, "LengthGroupedSampler: batch_size = ", batch_size, ", expected >= 1");
}

Indices LengthGroupedSampler::indices(int64_t epoch) const {
  const uint64_t seed = reshuffle_each_epoch_ ? seed_ + static_cast<uint64_t>(epoch) : seed_;
  return get_length_grouped_indices(lengths_, batch_size_, std::nullopt,
                                    at::make_generator<at::CPUGeneratorImpl>(seed));
}

}  // namespace accel
