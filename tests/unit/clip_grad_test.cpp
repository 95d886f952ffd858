// accel::clip_grad_norm (the multi-tensor, non-syncing clip) against
// LibTorch's torch::nn::utils::clip_grad_norm_: the same norm and the same
// clipped gradients for the 2-, 1- and inf-norms, mixed dtypes, parameters
// without gradients, and bad arguments named.
#include <limits>

#include <gtest/gtest.h>

#include <torch/nn/utils/clip_grad.h>
#include <torch/torch.h>

#include "accel/optim/clip_grad.h"
#include "support/errors.h"

namespace {

using accel::testing::expect_error;

std::vector<torch::Tensor> params_with_grads(double grad_scale) {
  auto g = at::detail::createCPUGenerator(5);
  std::vector<torch::Tensor> ps;
  for (auto shape : {std::vector<int64_t>{7, 3}, {5}, {2, 2, 2}, {1}}) {
    auto p = torch::randn(shape, g).requires_grad_();
    p.mutable_grad() = torch::randn(shape, g) * grad_scale;
    ps.push_back(p);
  }
  ps.push_back(torch::randn({3}, g).requires_grad_());  // no gradient
  return ps;
}

std::vector<torch::Tensor> clone_grads(const std::vector<torch::Tensor>& ps) {
  std::vector<torch::Tensor> out;
  for (const auto& p : ps) {
    auto q = p.detach().clone().requires_grad_();
    if (p.grad().defined()) q.mutable_grad() = p.grad().clone();
    out.push_back(q);
  }
  return out;
}

}  // namespace

TEST(ClipGradNorm, EqualsLibTorchForEachNormType) {
  for (double norm_type : {2.0, 1.0, 3.0, std::numeric_limits<double>::infinity()}) {
    for (double max_norm : {0.5, 1e6}) {  // clipped, and left alone
      auto a = params_with_grads(2.0);
      auto b = clone_grads(a);
      const double want = torch::nn::utils::clip_grad_norm_(a, max_norm, norm_type);
      auto got = accel::clip_grad_norm(b, max_norm, norm_type);
      EXPECT_EQ(got.dim(), 0);
      EXPECT_NEAR(got.item<double>(), want, 1e-5 * want) << "norm " << norm_type;
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].grad().defined(), b[i].grad().defined());
        if (a[i].grad().defined()) {
          EXPECT_TRUE(torch::allclose(b[i].grad(), a[i].grad(), 1e-5, 1e-7)) << "norm " << norm_type << " tensor " << i;
        }
      }
    }
  }
}

TEST(ClipGradNorm, MixedDtypesAndNoGradients) {
  auto a = params_with_grads(1.0);
  a[1].mutable_grad() = a[1].grad().to(torch::kDouble);
  auto want = torch::sqrt(a[0].grad().pow(2).sum() + a[1].grad().pow(2).sum().to(torch::kFloat) +
                          a[2].grad().pow(2).sum() + a[3].grad().pow(2).sum());
  auto norm = accel::grad_norm(a);
  EXPECT_NEAR(norm.item<double>(), want.item<double>(), 1e-5);
  auto before = a[1].grad().clone();
  accel::clip_grad_norm(a, 0.1);
  EXPECT_NEAR(accel::grad_norm(a).item<double>(), 0.1, 1e-5);
  EXPECT_EQ(a[1].grad().scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::allclose(a[1].grad(), before * (0.1 / (want.item<double>() + 1e-6)), 1e-5));

  std::vector<torch::Tensor> none{torch::randn({2}).requires_grad_()};
  EXPECT_EQ(accel::clip_grad_norm(none, 1.0).item<double>(), 0.0);
}

TEST(ClipGradNorm, BadArgumentsAreNamed) {
  auto a = params_with_grads(1.0);
  expect_error<std::invalid_argument>([&] { accel::clip_grad_norm(a, -1.0); }, {"max_norm is -1"});
  expect_error<std::invalid_argument>([&] { accel::clip_grad_norm(a, 1.0, -2.0); }, {"norm_type is -2"});
}
