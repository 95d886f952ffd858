#include "accel/data/sampler.h"

#include <numeric>
#include <stdexcept>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "accel/util/check.h"

namespace accel {
namespace {
void check_size(const char* who, int64_t n) { ACCEL_CHECK_ARG(n >= 0, who, ": size ", n, " must be >= 0"); }
}  // namespace

SequentialSampler::SequentialSampler(int64_t n) : n_(n) { check_size("SequentialSampler", n); }

Indices SequentialSampler::indices(int64_t) const {
  Indices out(static_cast<size_t>(n_));
  std::iota(out.begin(), out.end(), int64_t{0});
  return out;
}

SeedableRandomSampler::SeedableRandomSampler(int64_t n, uint64_t seed) : n_(n), seed_(seed) {
  check_size("SeedableRandomSampler", n);
}

Indices SeedableRandomSampler::indices(int64_t epoch) const {
  // Python adds the epoch to the seed as integers; so do we (wrapping as
  // manual_seed's uint64 does).
  return seeded_permutation(n_, seed_ + static_cast<uint64_t>(epoch));
}

Indices seeded_permutation(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto perm = torch::randperm(n, gen, torch::kLong).contiguous();
  const int64_t* p = perm.data_ptr<int64_t>();
  return Indices(p, p + n);
}

uint64_t default_initial_seed() { return at::detail::getDefaultCPUGenerator().current_seed(); }

}  // namespace accel
