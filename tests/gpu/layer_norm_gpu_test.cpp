// The kernel path of accel::layer_norm (add_layer_norm's kernels without a
// residual) and of output_dtype = bf16 (layer_norm and add_layer_norm; the
// kernel writes bf16 from a float32 or bf16 stream) against the ATen
// composition (fused_kernel(false): torch::layer_norm, then .to(dtype)),
// forward and backward, label gpu. Rows not a multiple of a block's 8 (1,
// 37, 8193) and widths that are not a power of two (7, 771, 1000); the
// backward's packed loads (widths dividing by 4, aligned rows) against its
// one-element loop (a misaligned gradient).
// Tolerances, relative to the largest reference value of each tensor:
// float32 1e-5 forward and 1e-4 backward (the weight and bias gradients sum
// thousands of rows in another order); a bfloat16 result 2^-7 (one rounding
// step: ATen may round twice where the kernel rounds once); bf16 weight and
// bias gradients 2e-2 (summed from bf16 gradients over many rows).
#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "accel/amp/autocast.h"
#include "accel/ops/add_layer_norm.h"
#include "accel/ops/layer_norm.h"
#include "gpu/kernel_compare.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/add_layer_norm.h"
#endif

namespace {

using accel::testing::expect_close;

struct Case {
  torch::ScalarType x, w;              // the stream's and the parameters' types
  bool autocast;                       // bf16 autocast on CUDA around the op
  std::optional<c10::ScalarType> out;  // output_dtype
  bool residual = false;               // add_layer_norm (a bf16 residual) instead of layer_norm
};

struct Run {
  torch::Tensor sum, normed, gx, gr, gw, gb;
};

Run run(const Case& c, int64_t rows, int64_t C, bool kernel, bool affine) {
  auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(rows * 1000 + C));
  auto x = (torch::randn({rows, C}, gen) * 2 + 0.5).to(c.x).cuda().requires_grad_();
  auto r = torch::randn({rows, C}, gen).to(torch::kBFloat16).cuda().requires_grad_();
  torch::Tensor w, b;
  if (affine) {
    w = (1 + 0.1 * torch::randn({C}, gen)).to(c.w).cuda().requires_grad_();
    b = (0.1 * torch::randn({C}, gen)).to(c.w).cuda().requires_grad_();
  }
  auto gy = torch::randn({rows, C}, gen).cuda();
  auto gs = torch::randn({rows, C}, gen).cuda();
  Run res;
  {
    accel::AutocastGuard guard(torch::kCUDA, torch::kBFloat16, c.autocast);
    if (c.residual) {
      auto out =
          accel::add_layer_norm(x, r, w, b, accel::AddLayerNormOptions().output_dtype(c.out).fused_kernel(kernel));
      res.sum = out.sum;
      res.normed = out.normed;
    } else {
      res.normed = accel::layer_norm(x, w, b, accel::LayerNormOptions().output_dtype(c.out).fused_kernel(kernel));
    }
  }
  auto loss = (res.normed.to(torch::kFloat) * gy).sum();
  if (res.sum.defined()) loss = loss + (res.sum.to(torch::kFloat) * gs).sum();
  loss.backward();
  if (res.sum.defined()) res.sum = res.sum.detach();
  res.normed = res.normed.detach();
  res.gx = x.grad();
  if (c.residual) res.gr = r.grad();
  if (affine) {
    res.gw = w.grad();
    res.gb = b.grad();
  }
  return res;
}

void expect_kernel_matches_aten(const Case& c, int64_t rows, int64_t C, bool affine = true) {
  SCOPED_TRACE(::testing::Message() << (c.residual ? "add_layer_norm" : "layer_norm") << " x " << c.x << " weight "
                                    << c.w << (c.autocast ? " autocast" : "") << " output "
                                    << (c.out ? c10::toString(*c.out) : "unset") << " rows " << rows << " C " << C
                                    << (affine ? "" : " no weight/bias"));
  const auto k = run(c, rows, C, true, affine);
  const auto a = run(c, rows, C, false, affine);
  if (c.out) {
    EXPECT_EQ(k.normed.scalar_type(), *c.out);
  }
  const bool low = c.x == torch::kBFloat16;
  const double fwd = low ? std::ldexp(1.0, -7) : 1e-5, bwd = low ? std::ldexp(1.0, -7) : 1e-4;
  const double affine_tol = (low || c.w == torch::kBFloat16) ? 2e-2 : 1e-4;
  if (c.residual) {
    EXPECT_TRUE(torch::equal(k.sum, a.sum)) << "sum";
  }
  expect_close(k.normed, a.normed, fwd, "normed");
  expect_close(k.gx, a.gx, bwd, "grad x");
  expect_close(k.gr, a.gr, bwd, "grad residual");
  expect_close(k.gw, a.gw, affine_tol, "grad weight");
  expect_close(k.gb, a.gb, affine_tol, "grad bias");
}

constexpr auto f32 = torch::kFloat;
constexpr auto bf16 = torch::kBFloat16;

}  // namespace

TEST(LayerNormGpu, KernelMatchesTheAtenLayerNorm) {
  REQUIRE_KERNELS();
  const Case plain{f32, f32, false, std::nullopt};
  for (int64_t rows : {1, 37, 8193})
    for (int64_t C : {7, 771, 1000}) expect_kernel_matches_aten(plain, rows, C);
  expect_kernel_matches_aten(plain, 16, 768);
  expect_kernel_matches_aten(plain, 37, 771, /*affine=*/false);
  // Under autocast: float32 out of a float32 or a bf16 stream.
  expect_kernel_matches_aten({f32, f32, true, std::nullopt}, 37, 771);
  expect_kernel_matches_aten({bf16, f32, true, std::nullopt}, 37, 771);
  // A bf16 model without autocast.
  expect_kernel_matches_aten({bf16, bf16, false, std::nullopt}, 37, 771);
  expect_kernel_matches_aten({bf16, bf16, false, std::nullopt}, 8193, 768, /*affine=*/false);
}

TEST(LayerNormGpu, Bf16OutputMatchesTheCastOfAten) {
  REQUIRE_KERNELS();
  // GPT-2's ln_1 / ln_f under autocast: a float32 stream and parameters.
  for (auto [rows, C] : {std::pair<int64_t, int64_t>{37, 771}, {16, 768}, {8193, 768}, {1, 7}})
    expect_kernel_matches_aten({f32, f32, true, bf16}, rows, C);
  expect_kernel_matches_aten({f32, f32, true, bf16}, 37, 771, /*affine=*/false);
  // A bf16 stream under autocast (bf16 or float32 parameters), and a
  // float32 one without autocast.
  expect_kernel_matches_aten({bf16, f32, true, bf16}, 37, 771);
  expect_kernel_matches_aten({bf16, bf16, true, bf16}, 16, 768);
  expect_kernel_matches_aten({f32, f32, false, bf16}, 37, 771);
}

TEST(AddLayerNormGpu, Bf16OutputMatchesTheCastOfAten) {
  REQUIRE_KERNELS();
  // GPT-2's ln_2 under autocast: a float32 stream plus a bf16 attention output.
  Case gpt2{f32, f32, true, bf16};
  gpt2.residual = true;
  for (auto [rows, C] : {std::pair<int64_t, int64_t>{37, 771}, {16, 768}, {8193, 1000}})
    expect_kernel_matches_aten(gpt2, rows, C);
  expect_kernel_matches_aten(gpt2, 37, 771, /*affine=*/false);
  Case low{bf16, bf16, true, bf16};
  low.residual = true;
  expect_kernel_matches_aten(low, 37, 771);
}

TEST(LayerNormGpu, KernelWithoutResidualWritesNoSumAndNormalisesX) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  // mean, rstd and the bf16 output of a float32 x against float64.
  auto gen = at::detail::createCPUGenerator(8);
  auto x = (torch::randn({37, 771}, gen) * 3 + 2).cuda();
  auto f = accel::kernels::add_layer_norm_forward(x, torch::Tensor(), torch::Tensor(), torch::Tensor(), 1e-5,
                                                  torch::kBFloat16);
  EXPECT_EQ(f.sum.data_ptr(), x.data_ptr());  // no copy: the backward reads x
  ASSERT_EQ(f.out.scalar_type(), torch::kBFloat16);
  auto s = x.to(torch::kDouble);
  auto mean = s.mean(1);
  auto rstd = (s.var(1, /*unbiased=*/false) + 1e-5).rsqrt();
  auto want = (s - mean.unsqueeze(1)) * rstd.unsqueeze(1);
  EXPECT_LE((f.mean.to(torch::kDouble) - mean).abs().max().item<double>(), 1e-5);
  EXPECT_LE(((f.rstd.to(torch::kDouble) - rstd) / rstd).abs().max().item<double>(), 1e-5);
  // One rounding to bf16 of values below 2^3 (half a step: at most 2^-6)
  // of a float32 result (1e-5).
  EXPECT_LE((f.out.to(torch::kDouble) - want).abs().max().item<double>(), std::ldexp(1.0, -6) + 1e-5);
#endif
}

TEST(LayerNormGpu, BackwardOfMisalignedGradientsEqualsTheAlignedOnes) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  // The backward moves 4 elements at a time where the rows allow it; a
  // gradient one element past an aligned address takes the one-at-a-time
  // loop. Both give the same gradients up to float32 summation order.
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    SCOPED_TRACE(::testing::Message() << dtype);
    auto gen = at::detail::createCPUGenerator(12);
    const int64_t rows = 37, C = 768;
    auto x = (torch::randn({rows, C}, gen) * 2 + 1).to(dtype).cuda();
    auto w = (1 + 0.1 * torch::randn({C}, gen)).cuda();
    auto f = accel::kernels::add_layer_norm_forward(x, torch::Tensor(), w, torch::Tensor(), 1e-5, dtype);
    auto flat = torch::randn({rows * C + 1}, gen).to(dtype).cuda();
    auto misaligned = flat.narrow(0, 1, rows * C).view({rows, C});
    ASSERT_TRUE(misaligned.is_contiguous());
    auto aligned = misaligned.clone();
    auto a = accel::kernels::add_layer_norm_backward(aligned, torch::Tensor(), f.sum, f.mean, f.rstd, w, true);
    auto m = accel::kernels::add_layer_norm_backward(misaligned, torch::Tensor(), f.sum, f.mean, f.rstd, w, true);
    expect_close(m.grad_sum, a.grad_sum, 1e-5, "grad x");
    expect_close(m.grad_weight, a.grad_weight, 1e-5, "grad weight");
    expect_close(m.grad_bias, a.grad_bias, 1e-5, "grad bias");
  }
#endif
}
