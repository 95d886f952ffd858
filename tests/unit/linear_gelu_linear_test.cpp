// accel::linear_gelu_linear and accel::linear on the CPU (their ATen path)
// against a float64 reference written out here: the values and every
// gradient, with batch dimensions, without biases, and bad shapes named.
// The CUDA GEMM epilogues are checked against the same composition in
// tests/gpu/gemm_epilogue_gpu_test.cpp.
#include <cmath>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/ops/linear.h"
#include "accel/ops/linear_gelu_linear.h"
#include "support/errors.h"

using accel::testing::expect_error;

namespace {

// GELU's tanh approximation, written out.
torch::Tensor gelu_tanh(const torch::Tensor& v) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * v * (1.0 + torch::tanh(k * (v + 0.044715 * v * v * v)));
}

struct Mlp {
  torch::Tensor x, w1, b1, w2, b2;
  std::vector<torch::Tensor> params() const { return {x, w1, b1, w2, b2}; }
};

Mlp make(torch::ScalarType dtype, bool biases) {
  auto g = at::detail::createCPUGenerator(5);
  auto p = [&](std::vector<int64_t> shape, double scale) {
    return (torch::randn(shape, g) * scale).to(dtype).requires_grad_();
  };
  Mlp m;
  m.x = p({3, 5, 12}, 1.0);
  m.w1 = p({20, 12}, 0.4);
  m.b1 = biases ? p({20}, 0.3) : torch::Tensor();
  m.w2 = p({6, 20}, 0.3);
  m.b2 = biases ? p({6}, 0.3) : torch::Tensor();
  return m;
}

void expect_mlp_matches_reference(torch::ScalarType dtype, bool biases, double tol) {
  auto a = make(dtype, biases);
  auto y = accel::linear_gelu_linear(a.x, a.w1, a.b1, a.w2, a.b2);
  auto b = make(torch::kDouble, biases);
  auto pre = torch::matmul(b.x, b.w1.t());
  if (biases) pre = pre + b.b1;
  auto ref = torch::matmul(gelu_tanh(pre), b.w2.t());
  if (biases) ref = ref + b.b2;
  ASSERT_EQ(y.sizes(), ref.sizes());
  EXPECT_EQ(y.scalar_type(), dtype);
  EXPECT_LT((y.to(torch::kDouble) - ref).abs().max().item<double>(), tol);
  // A loss that weighs each output differently, so every gradient is checked.
  auto weights = torch::linspace(-1.0, 2.0, ref.numel(), torch::kDouble).view(ref.sizes());
  (y.to(torch::kDouble) * weights).sum().backward();
  (ref * weights).sum().backward();
  const auto pa = a.params(), pb = b.params();
  for (size_t i = 0; i < pa.size(); ++i) {
    if (!pb[i].defined()) continue;
    ASSERT_TRUE(pa[i].grad().defined()) << "input " << i;
    EXPECT_LT((pa[i].grad().to(torch::kDouble) - pb[i].grad()).abs().max().item<double>(), tol) << "input " << i;
  }
}

}  // namespace

TEST(LinearGeluLinear, EqualsTheCompositionInFloat64AndFloat32) {
  expect_mlp_matches_reference(torch::kDouble, true, 1e-12);
  expect_mlp_matches_reference(torch::kFloat, true, 1e-5);
  expect_mlp_matches_reference(torch::kFloat, false, 1e-5);
}

TEST(LinearGeluLinear, RefusesShapesThatDoNotFitNamingThem) {
  auto m = make(torch::kFloat, true);
  expect_error<std::invalid_argument>([&] { accel::linear_gelu_linear(m.x, m.w1.t(), m.b1, m.w2, m.b2); },
                                      {"fc_weight", "[12, 20]", "[H, 12]"});
  expect_error<std::invalid_argument>([&] { accel::linear_gelu_linear(m.x, m.w1, m.b2, m.w2, m.b2); },
                                      {"fc_bias", "[20]"});
  expect_error<std::invalid_argument>([&] { accel::linear_gelu_linear(m.x, m.w1, m.b1, m.w1, m.b2); },
                                      {"proj_weight", "[C_out, 20]"});
  expect_error<std::invalid_argument>([&] { accel::linear_gelu_linear(m.x, m.w1, m.b1, m.w2, m.b1); },
                                      {"proj_bias", "[6]"});
}

TEST(Linear, EqualsXWeightTransposedPlusBias) {
  auto g = at::detail::createCPUGenerator(9);
  auto x = torch::randn({4, 3, 16}, g, torch::kDouble).requires_grad_();
  auto w = torch::randn({8, 16}, g, torch::kDouble).requires_grad_();
  auto b = torch::randn({8}, g, torch::kDouble).requires_grad_();
  auto y = accel::linear(x, w, b);
  auto ref = torch::matmul(x.detach(), w.detach().t()) + b.detach();
  EXPECT_LT((y - ref).abs().max().item<double>(), 1e-12);
  y.pow(2).sum().backward();
  auto gy = 2 * ref;
  EXPECT_LT((b.grad() - gy.sum(std::vector<int64_t>{0, 1})).abs().max().item<double>(), 1e-10);
  EXPECT_LT((w.grad() - gy.reshape({-1, 8}).t().mm(x.detach().reshape({-1, 16}))).abs().max().item<double>(), 1e-10);
  EXPECT_LT((x.grad() - torch::matmul(gy, w.detach())).abs().max().item<double>(), 1e-10);
  EXPECT_TRUE(accel::linear(x, w).allclose(torch::matmul(x, w.t())));
}
