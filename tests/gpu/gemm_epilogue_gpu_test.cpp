// The cuBLASLt GEMM epilogues (src/accel/ops/cuda/gemm_epilogue.h) and the
// ops built on them, accel::linear and accel::linear_gelu_linear, on CUDA
// (label gpu): each epilogue in bfloat16 and (where cuBLASLt offers it)
// float32 without TF32 against float64 on the CPU, at sizes that are
// multiples of 8 but no power of two and an odd row count; the ops under bf16 autocast against the ATen composition
// under the same autocast (within bf16 rounding); sizes the epilogues do not take (a width of 771) run the ATen path,
// bit for bit; matrices aligned to only 16 bytes.
#include <cmath>
#include <cstdint>
#include <utility>

#include <gtest/gtest.h>

#include <ATen/Context.h>
#include <torch/torch.h>

#include "accel/amp/autocast.h"
#include "accel/ops/linear.h"
#include "accel/ops/linear_gelu_linear.h"
#include "gpu/kernel_compare.h"
#include "support/cuda.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/gemm_epilogue.h"
#endif

namespace {

double max_rel(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got.cpu().to(torch::kDouble) - want).abs().max() / want.abs().max().clamp_min(1e-30)).item<double>();
}

// float32 without TF32, for the duration of a test.
struct NoTf32 {
  bool was = at::globalContext().allowTF32CuBLAS();
  NoTf32() { at::globalContext().setAllowTF32CuBLAS(false); }
  ~NoTf32() { at::globalContext().setAllowTF32CuBLAS(was); }
};

}  // namespace

#if ACCEL_CUDA_KERNELS
namespace {

torch::Tensor gelu_tanh(const torch::Tensor& v) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * v * (1.0 + torch::tanh(k * (v + 0.044715 * v * v * v)));
}

// Each epilogue in bfloat16 (the type GPT-2 trains in: cuBLASLt must offer
// it) against float64 from the same rounded inputs, within bf16's rounding
// of the outputs; and in float32 without TF32, tightly, where cuBLASLt
// offers the epilogue for float32 (said in the log where it does not).
struct Tolerance {
  double relative;  // of the largest reference value
};

Tolerance of(torch::ScalarType type) { return {type == torch::kFloat ? 1e-5 : 1e-2}; }

// `t` (float64) rounded to `type`, on the GPU, and the rounded values back in float64.
std::pair<torch::Tensor, torch::Tensor> on_gpu(const torch::Tensor& t, torch::ScalarType type) {
  auto g = t.to(type).cuda();
  return {g, g.cpu().to(torch::kDouble)};
}

void bias_gelu(torch::ScalarType type) {
  SCOPED_TRACE(c10::toString(type));
  auto g = at::detail::createCPUGenerator(1);
  const int64_t N = 37, K = 72, M = 104;
  auto [x, x64] = on_gpu(torch::randn({N, K}, g, torch::kDouble), type);
  auto [w, w64] = on_gpu(torch::randn({M, K}, g, torch::kDouble) * 0.3, type);
  auto [b, b64] = on_gpu(torch::randn({M}, g, torch::kDouble), type);
  auto out = torch::empty({N, M}, x.options());
  auto pre = torch::empty_like(out);
  const bool taken = accel::kernels::linear_bias_gelu(x, w, b, out, pre);
  if (type == torch::kFloat && !taken) {
    GTEST_LOG_(INFO) << "cuBLASLt offers no float32 GELU_AUX_BIAS here";
    return;
  }
  ASSERT_TRUE(taken);
  auto ref_pre = x64.mm(w64.t()) + b64;
  EXPECT_LT(max_rel(pre, ref_pre), of(type).relative);
  EXPECT_LT(max_rel(out, gelu_tanh(ref_pre)), of(type).relative);
  // float32 is tight enough to tell the tanh approximation from the erf
  // GELU (up to ~5e-4 apart where the pre-activations reach 2-3).
  if (type == torch::kFloat) {
    EXPECT_LT((out.cpu().to(torch::kDouble) - gelu_tanh(ref_pre)).abs().max().item<double>(), 5e-5);
  }
}

void weight_and_bias_grad(torch::ScalarType type) {
  SCOPED_TRACE(c10::toString(type));
  auto g = at::detail::createCPUGenerator(2);
  const int64_t N = 45, K = 56, M = 24;
  auto [grad_out, grad_out64] = on_gpu(torch::randn({N, M}, g, torch::kDouble), type);
  auto [x, x64] = on_gpu(torch::randn({N, K}, g, torch::kDouble), type);
  auto grad_w = torch::empty({M, K}, x.options());
  auto grad_b = torch::empty({M}, x.options());
  const bool taken = accel::kernels::linear_weight_and_bias_grad(grad_out, x, grad_w, grad_b);
  if (type == torch::kFloat && !taken) {
    GTEST_LOG_(INFO) << "cuBLASLt offers no float32 BGRADB here";
    return;
  }
  ASSERT_TRUE(taken);
  EXPECT_LT(max_rel(grad_w, grad_out64.t().mm(x64)), of(type).relative);
  EXPECT_LT(max_rel(grad_b, grad_out64.sum(0)), of(type).relative);
}

}  // namespace
#endif

TEST(GemmEpilogueGpu, BiasGeluWritesGeluAndItsInput) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  NoTf32 exact;
  bias_gelu(torch::kBFloat16);
  bias_gelu(torch::kFloat);
#endif
}

TEST(GemmEpilogueGpu, WeightGradientWithBiasGradientInOneGemm) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  NoTf32 exact;
  weight_and_bias_grad(torch::kBFloat16);
  weight_and_bias_grad(torch::kFloat);
#endif
}

TEST(GemmEpilogueGpu, OpsUnderBf16AutocastTrackTheAtenComposition) {
  REQUIRE_CUDA();
  auto g = at::detail::createCPUGenerator(4);
  const int64_t C = 64, H = 256;
  auto x0 = torch::randn({3, 37, C}, g);
  auto w10 = torch::randn({H, C}, g) * 0.1, b10 = torch::randn({H}, g) * 0.1;
  auto w20 = torch::randn({C, H}, g) * 0.05, b20 = torch::randn({C}, g) * 0.1;
  auto run = [&](bool fused) {
    auto p = [](const torch::Tensor& t) { return t.cuda().requires_grad_(); };
    auto x = p(x0), w1 = p(w10), b1 = p(b10), w2 = p(w20), b2 = p(b20);
    torch::Tensor y, z;
    {
      accel::AutocastGuard autocast(torch::kCUDA, torch::kBFloat16);
      y = accel::linear_gelu_linear(x, w1, b1, w2, b2, accel::LinearGeluLinearOptions().fused_kernel(fused));
      z = accel::linear(y, w20.t().contiguous().cuda(), b10.cuda(), accel::LinearOptions().fused_kernel(fused));
    }
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    auto weights = torch::linspace(-1.0, 1.0, z.numel(), z.options().dtype(torch::kFloat)).view(z.sizes());
    (z.to(torch::kFloat) * weights).sum().backward();
    std::vector<torch::Tensor> out{y.detach().to(torch::kFloat).cpu()};
    for (const auto& t : {x, w1, b1, w2, b2}) out.push_back(t.grad().cpu());
    return out;
  };
  const auto fused = run(true), plain = run(false);
  const char* names[] = {"y", "grad x", "grad fc_w", "grad fc_b", "grad proj_w", "grad proj_b"};
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_EQ(fused[i].scalar_type(), plain[i].scalar_type()) << names[i];
    EXPECT_LT(max_rel(fused[i], plain[i].to(torch::kDouble)), 3e-2) << names[i];
  }
}

TEST(GemmEpilogueGpu, SizesTheEpiloguesDoNotTakeRunTheAtenPath) {
  REQUIRE_CUDA();
  auto g = at::detail::createCPUGenerator(6);
  auto x = torch::randn({5, 771}, g).cuda();  // rows of 771 elements: not 16-byte multiples
  auto w1 = torch::randn({96, 771}, g).cuda() * 0.05, b1 = torch::randn({96}, g).cuda();
  auto w2 = torch::randn({24, 96}, g).cuda() * 0.1, b2 = torch::randn({24}, g).cuda();
#if ACCEL_CUDA_KERNELS
  EXPECT_FALSE(accel::kernels::gemm_epilogue_supports(x));
#endif
  auto y = accel::linear_gelu_linear(x, w1, b1, w2, b2);
  auto ref = at::linear(torch::gelu(at::linear(x, w1, b1), "tanh"), w2, b2);
  EXPECT_TRUE(y.equal(ref));
  EXPECT_TRUE(accel::linear(x, w1, b1).equal(at::linear(x, w1, b1)));
}

// cuBLASLt's heuristic assumes 256-byte aligned matrices unless told: a view
// starting 16 bytes into its buffer (a slice of a flat buffer) must get an
// algorithm that takes it, also after the same shapes ran aligned (the
// chosen algorithms are cached by shape and alignment).
TEST(GemmEpilogueGpu, MatricesAlignedToOnly16BytesAfterAlignedOnesOfTheSameShape) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  auto g = at::detail::createCPUGenerator(7);
  const int64_t N = 64, K = 96, M = 128;
  auto offset_view = [](const torch::Tensor& t) {  // the same values, 16 bytes into a larger buffer
    auto flat = torch::empty({t.numel() + 8}, t.options());
    auto v = flat.narrow(0, 8, t.numel()).view(t.sizes());
    v.copy_(t);
    return v;
  };
  auto grad_out = torch::randn({N, M}, g).to(torch::kBFloat16).cuda();
  auto x = torch::randn({N, K}, g).to(torch::kBFloat16).cuda();
  auto run = [](const torch::Tensor& go, const torch::Tensor& xs, const torch::Tensor& gw) {
    auto gb = torch::empty({go.size(1)}, go.options());
    EXPECT_TRUE(accel::kernels::linear_weight_and_bias_grad(go, xs, gw, gb));
    return std::make_pair(gw.clone(), gb);
  };
  auto [w_aligned, b_aligned] = run(grad_out, x, torch::empty({M, K}, x.options()));
  auto grad_out_16 = offset_view(grad_out), x_16 = offset_view(x);
  ASSERT_NE(reinterpret_cast<uintptr_t>(x_16.data_ptr()) % 256, 0u);
  auto [w_offset, b_offset] = run(grad_out_16, x_16, offset_view(torch::zeros({M, K}, x.options())));
  auto ref_w = grad_out.cpu().to(torch::kDouble).t().mm(x.cpu().to(torch::kDouble));
  EXPECT_LT(max_rel(w_offset, ref_w), 1e-2);
  EXPECT_LT(max_rel(w_aligned, ref_w), 1e-2);
  EXPECT_LT(max_rel(b_offset, grad_out.cpu().to(torch::kDouble).sum(0)), 1e-2);
#endif
}
