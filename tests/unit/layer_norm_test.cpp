// accel::layer_norm on the CPU (its ATen path, the reference of the CUDA
// kernels) against LayerNorm written out by hand in float64, in float32 and
// bf16, with and without weight and bias, forward and gradients; the
// output_dtype option of layer_norm and add_layer_norm against
// layer_norm(...).to(dtype), forward and backward; bad shapes and options
// are named.
#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "accel/ops/add_layer_norm.h"
#include "accel/ops/layer_norm.h"
#include "support/errors.h"

using accel::testing::expect_error;

namespace {

struct Inputs {
  torch::Tensor x, w, b, gy;
};

Inputs make(torch::ScalarType dtype, bool affine = true) {
  auto g = at::detail::createCPUGenerator(33);
  Inputs in;
  in.x = (torch::randn({3, 5, 13}, g) * 2 + 1).to(dtype).requires_grad_();
  if (affine) {
    in.w = (1 + 0.3 * torch::randn({13}, g)).to(dtype).requires_grad_();
    in.b = (0.3 * torch::randn({13}, g)).to(dtype).requires_grad_();
  }
  in.gy = torch::randn({3, 5, 13}, g).to(dtype);
  return in;
}

// The gradient of t, or an undefined tensor when t is.
torch::Tensor grad(const torch::Tensor& t) { return t.defined() ? t.grad() : torch::Tensor(); }

void expect_near(const torch::Tensor& got, const torch::Tensor& want, double tol, const char* what) {
  ASSERT_EQ(got.defined(), want.defined()) << what;
  if (!want.defined()) return;
  EXPECT_EQ(got.sizes(), want.sizes()) << what;
  EXPECT_LE((got.to(torch::kDouble) - want.to(torch::kDouble)).abs().max().item<double>(), tol) << what;
}

// layer_norm against the formula in float64 from the same values (rounded
// to `dtype`), forward and the gradients of x, weight and bias.
void expect_equals_float64_formula(torch::ScalarType dtype, bool affine, double tol) {
  SCOPED_TRACE(::testing::Message() << dtype << (affine ? " with" : " without") << " weight and bias");
  auto a = make(dtype, affine);
  auto y = accel::layer_norm(a.x, a.w, a.b, accel::LayerNormOptions().eps(1e-3));
  EXPECT_EQ(y.scalar_type(), dtype);
  (y.to(torch::kDouble) * a.gy.to(torch::kDouble)).sum().backward();

  auto as64 = [](const torch::Tensor& t) {
    return t.defined() ? t.detach().to(torch::kDouble).requires_grad_() : torch::Tensor();
  };
  auto x = as64(a.x), w = as64(a.w), b = as64(a.b);
  auto mean = x.mean(-1, true);
  auto ref = (x - mean) / ((x - mean).pow(2).mean(-1, true) + 1e-3).sqrt();
  if (affine) ref = ref * w + b;
  (ref * a.gy.to(torch::kDouble)).sum().backward();

  // tol is relative to the largest reference value of each tensor.
  auto scaled = [&](const torch::Tensor& t) { return tol * std::max(1.0, t.abs().max().item<double>()); };
  expect_near(y, ref, scaled(ref), "output");
  expect_near(a.x.grad(), x.grad(), scaled(x.grad()), "grad x");
  if (affine) {
    expect_near(a.w.grad(), w.grad(), scaled(w.grad()), "grad weight");
    expect_near(a.b.grad(), b.grad(), scaled(b.grad()), "grad bias");
  }
}

}  // namespace

TEST(LayerNorm, EqualsTheFormulaInFloat64) {
  for (bool affine : {true, false}) {
    expect_equals_float64_formula(torch::kDouble, affine, 1e-12);
    expect_equals_float64_formula(torch::kFloat, affine, 1e-5);
    // bf16: ATen computes in float32 and rounds each result once (2^-8
    // relative), the weight and bias gradients after summing 15 rows.
    expect_equals_float64_formula(torch::kBFloat16, affine, std::ldexp(1.0, -6));
  }
}

TEST(LayerNorm, EqualsTorchLayerNormOnTheCpu) {
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    auto a = make(dtype);
    auto y = accel::layer_norm(a.x, a.w, a.b, accel::LayerNormOptions().eps(1e-4));
    EXPECT_TRUE(torch::equal(y, torch::layer_norm(a.x, {13}, a.w, a.b, 1e-4))) << dtype;
    EXPECT_TRUE(torch::equal(accel::layer_norm(a.x, {}, {}), torch::layer_norm(a.x, {13}, {}, {}, 1e-5))) << dtype;
  }
}

TEST(LayerNorm, OutputDtypeEqualsTheCastForwardAndBackward) {
  for (bool affine : {true, false}) {
    SCOPED_TRACE(affine ? "with weight and bias" : "without");
    auto a = make(torch::kFloat, affine);
    auto y = accel::layer_norm(a.x, a.w, a.b, accel::LayerNormOptions().output_dtype(torch::kBFloat16));
    ASSERT_EQ(y.scalar_type(), torch::kBFloat16);
    (y.to(torch::kFloat) * a.gy).sum().backward();

    auto e = make(torch::kFloat, affine);
    auto ref = torch::layer_norm(e.x, {13}, e.w, e.b, 1e-5).to(torch::kBFloat16);
    (ref.to(torch::kFloat) * e.gy).sum().backward();
    EXPECT_TRUE(torch::equal(y, ref));
    EXPECT_TRUE(torch::equal(a.x.grad(), e.x.grad()));
    if (affine) {
      EXPECT_TRUE(torch::equal(a.w.grad(), e.w.grad()));
      EXPECT_TRUE(torch::equal(a.b.grad(), e.b.grad()));
    }
  }
  // Widening keeps ATen's bf16 rounding, then casts.
  auto a = make(torch::kBFloat16);
  auto y = accel::layer_norm(a.x, a.w, a.b, accel::LayerNormOptions().output_dtype(torch::kFloat));
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(y, torch::layer_norm(a.x, {13}, a.w, a.b, 1e-5).to(torch::kFloat)));
}

TEST(AddLayerNorm, OutputDtypeEqualsTheCastForwardAndBackward) {
  auto a = make(torch::kFloat);
  auto gen = at::detail::createCPUGenerator(5);
  auto r = torch::randn({3, 5, 13}, gen).requires_grad_();
  auto gs = torch::randn({3, 5, 13}, gen);
  auto out = accel::add_layer_norm(a.x, r, a.w, a.b, accel::AddLayerNormOptions().output_dtype(torch::kBFloat16));
  ASSERT_EQ(out.normed.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(out.sum.scalar_type(), torch::kFloat);
  ((out.normed.to(torch::kFloat) * a.gy).sum() + (out.sum * gs).sum()).backward();

  auto e = make(torch::kFloat);
  auto er = r.detach().clone().requires_grad_();
  auto sum = e.x + er;
  auto ref = torch::layer_norm(sum, {13}, e.w, e.b, 1e-5).to(torch::kBFloat16);
  ((ref.to(torch::kFloat) * e.gy).sum() + (sum * gs).sum()).backward();
  EXPECT_TRUE(torch::equal(out.sum, sum));
  EXPECT_TRUE(torch::equal(out.normed, ref));
  EXPECT_TRUE(torch::equal(a.x.grad(), e.x.grad()));
  EXPECT_TRUE(torch::equal(r.grad(), er.grad()));
  EXPECT_TRUE(torch::equal(a.w.grad(), e.w.grad()));
  EXPECT_TRUE(torch::equal(a.b.grad(), e.b.grad()));
}

TEST(LayerNorm, BadShapesAndOptionsAreNamed) {
  auto a = make(torch::kFloat);
  expect_error<std::invalid_argument>([&] { accel::layer_norm(torch::Tensor(), a.w, a.b); },
                                      {"layer_norm: ", "x must be defined"});
  expect_error<std::invalid_argument>([&] { accel::layer_norm(torch::tensor(1.0f), {}, {}); },
                                      {"x is", "expected [..., C] with C >= 1"});
  expect_error<std::invalid_argument>(
      [&] {
        accel::layer_norm(torch::ones({4, 0}), {}, {});
      },
      {"x is", "expected [..., C] with C >= 1"});
  expect_error<std::invalid_argument>([&] { accel::layer_norm(a.x, torch::ones({12}), a.b); },
                                      {"weight is", "[12]", "expected [13]"});
  expect_error<std::invalid_argument>(
      [&] {
        accel::layer_norm(a.x, a.w, torch::ones({13, 1}));
      },
      {"bias is", "expected [13]"});
  expect_error<std::invalid_argument>([&] { accel::layer_norm(a.x, a.w, a.b, accel::LayerNormOptions().eps(-1)); },
                                      {"eps is -1", "expected >= 0"});
  expect_error<std::invalid_argument>(
      [&] { accel::layer_norm(a.x, a.w, a.b, accel::LayerNormOptions().output_dtype(torch::kInt)); },
      {"output_dtype is Int", "expected a floating-point type"});
  expect_error<std::invalid_argument>(
      [&] { accel::add_layer_norm(a.x, a.x, a.w, a.b, accel::AddLayerNormOptions().output_dtype(torch::kLong)); },
      {"add_layer_norm: ", "output_dtype is Long", "expected a floating-point type"});
}
