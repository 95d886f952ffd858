// accel::add_layer_norm on the CPU (its ATen path, the reference of the
// CUDA kernels) against LayerNorm written out by hand in float64: the sum,
// the normalised output, and the gradients of x, residual, weight and bias
// for a loss reaching both outputs; mixed float32 + bf16 inputs promote
// like `x + residual`; bad shapes and options are named.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/ops/add_layer_norm.h"
#include "support/errors.h"

using accel::testing::expect_error;

namespace {

struct Inputs {
  torch::Tensor x, r, w, b, gy, gs;
};

Inputs make(torch::ScalarType dtype) {
  auto g = at::detail::createCPUGenerator(21);
  Inputs in;
  in.x = (torch::randn({3, 5, 11}, g) * 2 + 1).to(dtype).requires_grad_();
  in.r = torch::randn({3, 5, 11}, g).to(dtype).requires_grad_();
  in.w = (1 + 0.3 * torch::randn({11}, g)).to(dtype).requires_grad_();
  in.b = (0.3 * torch::randn({11}, g)).to(dtype).requires_grad_();
  in.gy = torch::randn({3, 5, 11}, g).to(dtype);
  in.gs = torch::randn({3, 5, 11}, g).to(dtype);
  return in;
}

}  // namespace

TEST(AddLayerNorm, EqualsLayerNormOfTheSumWrittenOutInFloat64) {
  auto a = make(torch::kDouble);
  auto out = accel::add_layer_norm(a.x, a.r, a.w, a.b, accel::AddLayerNormOptions().eps(1e-3));
  ((out.normed * a.gy).sum() + (out.sum * a.gs).sum()).backward();

  auto e = make(torch::kDouble);
  auto s = e.x + e.r;
  auto mean = s.mean(-1, true);
  auto var = (s - mean).pow(2).mean(-1, true);
  auto ref = (s - mean) / (var + 1e-3).sqrt() * e.w + e.b;
  ((ref * e.gy).sum() + (s * e.gs).sum()).backward();

  EXPECT_LT((out.sum - s).abs().max().item<double>(), 1e-12);
  EXPECT_LT((out.normed - ref).abs().max().item<double>(), 1e-12);
  EXPECT_LT((a.x.grad() - e.x.grad()).abs().max().item<double>(), 1e-10);
  EXPECT_LT((a.r.grad() - e.r.grad()).abs().max().item<double>(), 1e-10);
  EXPECT_LT((a.w.grad() - e.w.grad()).abs().max().item<double>(), 1e-10);
  EXPECT_LT((a.b.grad() - e.b.grad()).abs().max().item<double>(), 1e-10);
}

TEST(AddLayerNorm, WithoutWeightAndBiasNormalisesOnly) {
  auto a = make(torch::kDouble);
  auto out = accel::add_layer_norm(a.x, a.r, torch::Tensor(), torch::Tensor());
  auto s = (a.x + a.r).detach();
  auto ref = (s - s.mean(-1, true)) / (s.var(-1, /*unbiased=*/false, /*keepdim=*/true) + 1e-5).sqrt();
  EXPECT_LT((out.normed - ref).abs().max().item<double>(), 1e-12);
}

TEST(AddLayerNorm, MixedTypesPromoteLikeTheAdd) {
  auto a = make(torch::kFloat);
  auto r16 = a.r.detach().to(torch::kBFloat16);
  auto out = accel::add_layer_norm(a.x, r16, a.w, a.b);
  EXPECT_EQ(out.sum.scalar_type(), torch::kFloat);
  EXPECT_EQ(out.normed.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(out.sum, a.x + r16.to(torch::kFloat)));
}

TEST(AddLayerNorm, BadShapesAndOptionsAreNamed) {
  auto a = make(torch::kFloat);
  expect_error<std::invalid_argument>([&] { accel::add_layer_norm(a.x, a.r.narrow(1, 0, 4), a.w, a.b); },
                                      {"residual is", "expected x's shape"});
  expect_error<std::invalid_argument>([&] { accel::add_layer_norm(a.x, a.r, torch::ones({10}), a.b); },
                                      {"weight is", "expected [11]"});
  expect_error<std::invalid_argument>(
      [&] {
        accel::add_layer_norm(a.x, a.r, a.w, torch::ones({11, 1}));
      },
      {"bias is", "expected [11]"});
  expect_error<std::invalid_argument>(
      [&] { accel::add_layer_norm(a.x, a.r, a.w, a.b, accel::AddLayerNormOptions().eps(-1)); },
      {"eps is -1", "expected >= 0"});
}
