// accel::linear_cross_entropy against cross_entropy(linear(h, W), t) in
// float64: the loss, and the gradients of hidden and weight, with ignored
// targets, a chunk size that does not divide the rows, and a vocab that
// needs padding; float32 within rounding; no-grad mode; bad shapes named.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/ops/linear_cross_entropy.h"
#include "support/errors.h"

namespace F = torch::nn::functional;
using accel::testing::expect_error;

namespace {

struct Case {
  torch::Tensor h, w, t;
};

Case make(torch::ScalarType dtype) {
  auto g = at::detail::createCPUGenerator(11);
  Case c;
  c.h = torch::randn({3, 7, 16}, g).to(dtype).requires_grad_();
  c.w = (torch::randn({37, 16}, g) * 0.5).to(dtype).requires_grad_();
  c.t = torch::randint(0, 37, {3, 7}, g);
  c.t[0][2] = -100;
  c.t[2][6] = -100;
  return c;
}

void expect_matches_reference(torch::ScalarType dtype, const accel::LinearCrossEntropyOptions& options, double tol) {
  auto a = make(dtype);
  auto loss = accel::linear_cross_entropy(a.h, a.w, a.t, options);
  loss.backward();
  auto b = make(torch::kDouble);
  auto ref = F::cross_entropy(F::linear(b.h, b.w).view({-1, 37}), b.t.view({-1}));
  ref.backward();
  EXPECT_EQ(loss.scalar_type(), torch::kFloat);
  EXPECT_NEAR(loss.item<double>(), ref.item<double>(), tol);
  EXPECT_LT((a.h.grad().to(torch::kDouble) - b.h.grad()).abs().max().item<double>(), tol);
  EXPECT_LT((a.w.grad().to(torch::kDouble) - b.w.grad()).abs().max().item<double>(), tol);
  EXPECT_EQ(a.h.grad().scalar_type(), dtype);
  EXPECT_EQ(a.w.grad().scalar_type(), dtype);
}

}  // namespace

TEST(LinearCrossEntropy, EqualsLinearThenCrossEntropyInFloat64) {
  // 21 rows in chunks of 5, vocab 37 padded to 40.
  expect_matches_reference(torch::kDouble, accel::LinearCrossEntropyOptions().chunk_size(5).pad_to(8), 1e-6);
  // One chunk, no padding.
  expect_matches_reference(torch::kDouble, accel::LinearCrossEntropyOptions().chunk_size(0).pad_to(1), 1e-6);
}

TEST(LinearCrossEntropy, Float32WithDefaultsWithinRounding) { expect_matches_reference(torch::kFloat, {}, 1e-5); }

TEST(LinearCrossEntropy, NoGradModeGivesTheLossOnly) {
  auto a = make(torch::kFloat);
  torch::Tensor loss;
  {
    torch::NoGradGuard no_grad;
    loss = accel::linear_cross_entropy(a.h, a.w, a.t);
  }
  EXPECT_FALSE(loss.requires_grad());
  auto ref = F::cross_entropy(F::linear(a.h, a.w).view({-1, 37}), a.t.view({-1}));
  EXPECT_NEAR(loss.item<double>(), ref.item<double>(), 1e-5);
}

TEST(LinearCrossEntropy, BadShapesAreNamed) {
  auto a = make(torch::kFloat);
  expect_error<std::invalid_argument>(
      [&] {
        accel::linear_cross_entropy(a.h, torch::randn({37, 15}), a.t);
      },
      {"expected [V, 16]"});
  expect_error<std::invalid_argument>([&] { accel::linear_cross_entropy(a.h, a.w, a.t.view({-1}).narrow(0, 0, 20)); },
                                      {"expected one per row"});
  expect_error<std::invalid_argument>([&] { accel::linear_cross_entropy(a.h, a.w, a.t.to(torch::kInt)); },
                                      {"expected int64"});
  expect_error<std::invalid_argument>(
      [&] { accel::linear_cross_entropy(a.h, a.w, a.t, accel::LinearCrossEntropyOptions().pad_to(0)); },
      {"pad_to is 0"});
}
