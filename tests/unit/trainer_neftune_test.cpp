// NEFTune's noise against Transformers' rule: the bound computed the way
// its hook does (a Python float over a float32 tensor's square root), the
// noise inside it and uniform over it, and bad input refused.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <stdexcept>

#include "accel/trainer/neftune.h"

namespace {

// The hook's own expression with tensors: alpha / torch.sqrt(torch.tensor(L * d)).
double transformers_bound(double alpha, int64_t length, int64_t hidden) {
  return (alpha / torch::sqrt(torch::tensor(length * hidden))).item<double>();
}

TEST(NeftuneTest, BoundIsTransformersFloat32Expression) {
  for (const auto& [alpha, length, hidden] :
       {std::tuple{5.0, 7L, 3L}, std::tuple{0.1, 128L, 768L}, std::tuple{15.0, 1L, 1L}, std::tuple{3.3, 13L, 31L}}) {
    const auto x = torch::zeros({2, length, hidden});
    EXPECT_EQ(accel::neftune_magnitude(x, alpha), transformers_bound(alpha, length, hidden))
        << alpha << " " << length << " " << hidden;
    // and float32 rounding is all that separates it from the exact value
    EXPECT_NEAR(accel::neftune_magnitude(x, alpha), alpha / std::sqrt(double(length * hidden)),
                1e-6 * alpha / std::sqrt(double(length * hidden)));
  }
}

TEST(NeftuneTest, NoiseIsUniformWithinTheBound) {
  const double alpha = 5.0;
  const auto x = torch::randn({64, 50, 40});
  torch::Generator gen = torch::make_generator<torch::CPUGeneratorImpl>(1234);
  const auto noise = accel::neftune_noise(x, alpha, gen) - x;
  const double m = alpha / std::sqrt(50.0 * 40.0);
  // the subtraction rounds by one ulp of x at most
  EXPECT_LE(noise.abs().max().item<double>(), m * (1 + 1e-6) + 1e-6);
  EXPECT_GT(noise.max().item<double>(), 0.99 * m);
  EXPECT_LT(noise.min().item<double>(), -0.99 * m);
  // U(-m, m): mean 0, variance m^2 / 3; 128000 draws
  const auto n = noise.to(torch::kFloat64);
  EXPECT_NEAR(n.mean().item<double>(), 0.0, 0.02 * m);
  EXPECT_NEAR(n.var().item<double>(), m * m / 3, 0.02 * m * m / 3);
}

TEST(NeftuneTest, SameGeneratorSeedSameNoiseAsUniform) {
  const auto x = torch::randn({3, 4, 5});
  torch::Generator a = torch::make_generator<torch::CPUGeneratorImpl>(7);
  torch::Generator b = torch::make_generator<torch::CPUGeneratorImpl>(7);
  const double m = accel::neftune_magnitude(x, 2.0);
  const auto expected = x + torch::zeros_like(x).uniform_(-m, m, b);
  EXPECT_TRUE(torch::equal(accel::neftune_noise(x, 2.0, a), expected));
}

TEST(NeftuneTest, BadInputIsRefusedByValue) {
  EXPECT_THROW(accel::neftune_noise(torch::zeros({4, 5}), 5.0), std::invalid_argument);
  EXPECT_THROW(accel::neftune_noise(torch::zeros({1, 4, 5}), 0.0), std::invalid_argument);
  EXPECT_THROW(accel::neftune_noise(torch::zeros({1, 4, 5}, torch::kLong), 5.0), std::invalid_argument);
  try {
    accel::neftune_noise(torch::zeros({1, 4, 5}), -1.0);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("-1"), std::string::npos) << e.what();
  }
}

}  // namespace
