// accel::add_layer_norm's CUDA kernels (label gpu) against the ATen
// composition it replaces (x + residual, then layer_norm), forward and
// backward (a loss reaching both outputs), for the type combinations the
// kernels take: float32; a float32 stream plus a bf16 residual under bf16
// autocast (GPT-2's); bf16 with float32 or bf16 weights, with and without
// autocast. Rows not a multiple of a block's 8 (1, 37, 8193) and widths
// that are not a power of two (7, 1000, 768 * 3 + 1).
// Tolerances, relative to the largest reference value of each tensor:
// float32 1e-5 forward and 1e-4 backward (the weight and bias gradients sum
// thousands of rows in another order); bfloat16 results 2^-7 (one rounding
// step apart: ATen rounds twice where the kernel rounds once). The sum is
// exact in every case.
#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "accel/amp/autocast.h"
#include "accel/ops/add_layer_norm.h"
#include "gpu/kernel_compare.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/add_layer_norm.h"
#endif

namespace {

using accel::testing::expect_close;

struct Types {
  torch::ScalarType x, r, w;
  bool autocast;
};

struct Run {
  torch::Tensor sum, normed, gx, gr, gw, gb;
};

Run run(const Types& s, int64_t rows, int64_t C, bool kernel, bool affine) {
  auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(rows * 1000 + C));
  auto x = (torch::randn({rows, C}, gen) * 2 + 0.5).to(s.x).cuda().requires_grad_();
  auto r = torch::randn({rows, C}, gen).to(s.r).cuda().requires_grad_();
  torch::Tensor w, b;
  if (affine) {
    w = (1 + 0.1 * torch::randn({C}, gen)).to(s.w).cuda().requires_grad_();
    b = (0.1 * torch::randn({C}, gen)).to(s.w).cuda().requires_grad_();
  }
  auto gy = torch::randn({rows, C}, gen).cuda();
  auto gs = torch::randn({rows, C}, gen).cuda();
  accel::AddLayerNormOutput out;
  {
    accel::AutocastGuard guard(torch::kCUDA, torch::kBFloat16, s.autocast);
    out = accel::add_layer_norm(x, r, w, b, accel::AddLayerNormOptions().eps(1e-5).fused_kernel(kernel));
  }
  // A loss reaching the normalised output and the sum (the residual stream).
  auto loss = (out.normed.to(torch::kFloat) * gy).sum() + (out.sum.to(torch::kFloat) * gs).sum();
  loss.backward();
  Run res;
  res.sum = out.sum.detach();
  res.normed = out.normed.detach();
  res.gx = x.grad();
  res.gr = r.grad();
  if (affine) {
    res.gw = w.grad();
    res.gb = b.grad();
  }
  return res;
}

void expect_kernel_matches_aten(const Types& s, int64_t rows, int64_t C, bool affine = true) {
  SCOPED_TRACE(::testing::Message() << "x " << s.x << " residual " << s.r << " weight " << s.w
                                    << (s.autocast ? " autocast" : "") << " rows " << rows << " C " << C
                                    << (affine ? "" : " no weight/bias"));
  const auto k = run(s, rows, C, true, affine);
  const auto a = run(s, rows, C, false, affine);
  const bool low = s.x == torch::kBFloat16;
  const double fwd = low ? std::ldexp(1.0, -7) : 1e-5, bwd = low ? std::ldexp(1.0, -7) : 1e-4;
  EXPECT_TRUE(torch::equal(k.sum, a.sum)) << "sum";
  expect_close(k.normed, a.normed, fwd, "normed");
  expect_close(k.gx, a.gx, bwd, "grad x");
  expect_close(k.gr, a.gr, bwd, "grad residual");
  expect_close(k.gw, a.gw, low ? 2e-2 : 1e-4, "grad weight");
  expect_close(k.gb, a.gb, low ? 2e-2 : 1e-4, "grad bias");
}

}  // namespace

TEST(AddLayerNormGpu, Float32MatchesTheAtenComposition) {
  REQUIRE_KERNELS();
  const Types f32{torch::kFloat, torch::kFloat, torch::kFloat, false};
  for (int64_t rows : {1, 37, 8193})
    for (int64_t C : {7, 768, 1000}) expect_kernel_matches_aten(f32, rows, C);
  expect_kernel_matches_aten(f32, 37, 768 * 3 + 1);
  expect_kernel_matches_aten(f32, 37, 1000, /*affine=*/false);
}

TEST(AddLayerNormGpu, Float32StreamWithBf16ResidualUnderAutocast) {
  REQUIRE_KERNELS();
  const Types gpt2{torch::kFloat, torch::kBFloat16, torch::kFloat, true};
  for (int64_t rows : {37, 8193})
    for (int64_t C : {768, 1000}) expect_kernel_matches_aten(gpt2, rows, C);
  // The bf16 operand first: the op puts the wider one first itself.
  const Types swapped{torch::kBFloat16, torch::kFloat, torch::kFloat, true};
  expect_kernel_matches_aten(swapped, 37, 768);
}

TEST(AddLayerNormGpu, Bf16MatchesTheAtenComposition) {
  REQUIRE_KERNELS();
  for (auto w : {torch::kFloat, torch::kBFloat16})
    for (bool autocast : {false, true}) {
      if (w == torch::kFloat && !autocast) continue;  // ATen's layer_norm refuses bf16 input with fp32 weights
      const Types s{torch::kBFloat16, torch::kBFloat16, w, autocast};
      expect_kernel_matches_aten(s, 37, 1000);
      expect_kernel_matches_aten(s, 8193, 768);
    }
}

TEST(AddLayerNormGpu, KernelStatisticsAreThoseOfTheRoundedSum) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  // mean and rstd of x + r in float64, from the bf16 sum the kernel stores.
  auto gen = at::detail::createCPUGenerator(4);
  auto x = (torch::randn({33, 1000}, gen) * 3 + 2).to(torch::kBFloat16).cuda();
  auto r = torch::randn({33, 1000}, gen).to(torch::kBFloat16).cuda();
  auto f = accel::kernels::add_layer_norm_forward(x, r, torch::Tensor(), torch::Tensor(), 1e-5, torch::kFloat);
  auto s = f.sum.to(torch::kDouble);
  auto mean = s.mean(1);
  auto rstd = (s.var(1, /*unbiased=*/false) + 1e-5).rsqrt();
  EXPECT_LE((f.mean.to(torch::kDouble) - mean).abs().max().item<double>(), 1e-5);
  EXPECT_LE(((f.rstd.to(torch::kDouble) - rstd) / rstd).abs().max().item<double>(), 1e-5);
  EXPECT_LE((f.out.to(torch::kDouble) - (s - mean.unsqueeze(1)) * rstd.unsqueeze(1)).abs().max().item<double>(), 1e-4);
  // A gradient only through the sum passes straight to x and r.
  auto xg = x.to(torch::kFloat).requires_grad_(), rg = r.requires_grad_();
  auto out = accel::add_layer_norm(xg, rg, torch::Tensor(), torch::Tensor());
  out.sum.sum().backward();
  EXPECT_TRUE(torch::equal(xg.grad(), torch::ones_like(xg)));
  EXPECT_TRUE(torch::equal(rg.grad(), torch::ones_like(rg)));
#endif
}
