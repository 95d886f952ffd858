// The one-pass softmax cross-entropy kernel (label gpu) against float64
// ATen on the same logits: each row's loss and the gradient
// (softmax - one_hot) * scale, for float32 and bfloat16 logits and
// gradients, GPT-2's vocab (50257) with and without padding to 50304, an
// odd vocab that rules out packed loads, ignored rows, in place, loss only,
// and a target out of range (NaN). Then accel::linear_cross_entropy with the
// kernel against its ATen path, float32 and under bf16 autocast.
// Tolerances: the loss within 2e-5 relative (float32 arithmetic over 50k
// terms); a float32 gradient within 2e-6 absolute (softmax values are in
// [0, 1]: 2e-6 for float32 exp and logsumexp); a bfloat16 gradient within its rounding, 2^-8 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "accel/amp/autocast.h"
#include "accel/ops/linear_cross_entropy.h"
#include "gpu/kernel_compare.h"
#if ACCEL_CUDA_KERNELS
#include "accel/ops/cuda/softmax_cross_entropy.h"
#endif

namespace {

struct Reference {
  torch::Tensor loss;  // [rows] float64
  torch::Tensor grad;  // [rows, cols] float64
};

// The same math in float64 ATen ops: classes [0, V) of the logits.
Reference reference(const torch::Tensor& logits, const torch::Tensor& target, int64_t V, double scale) {
  auto x = logits.to(torch::kDouble).narrow(1, 0, V);
  auto valid = target.ne(-100);
  auto safe = torch::where(valid, target, torch::zeros_like(target)).unsqueeze(1);
  auto lse = torch::logsumexp(x, 1);
  Reference r;
  r.loss = (lse - x.gather(1, safe).squeeze(1)) * valid;
  auto g = torch::softmax(x, 1).scatter_add(1, safe, -torch::ones_like(safe, x.options()));
  g = g * valid.unsqueeze(1) * scale;
  r.grad = torch::zeros({logits.size(0), logits.size(1)}, g.options());
  r.grad.narrow(1, 0, V).copy_(g);
  return r;
}

torch::Tensor targets(int64_t rows, int64_t V, torch::Generator& g) {
  auto t = torch::randint(0, V, {rows}, g);
  for (int64_t i = 3; i < rows; i += 7) t[i] = -100;  // every 7th row from the 4th ignored
  t[0] = V - 1;                                       // the last class
  return t.cuda();
}

#if ACCEL_CUDA_KERNELS
void expect_kernel_matches(int64_t rows, int64_t V, int64_t cols, torch::ScalarType in, torch::ScalarType out,
                           bool in_place, double scale) {
  SCOPED_TRACE(::testing::Message() << "rows " << rows << " V " << V << " cols " << cols << " logits " << in << " grad "
                                    << out << (in_place ? " in place" : "") << " scale " << scale);
  auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(rows * 131 + V));
  auto logits = (torch::randn({rows, cols}, gen) * 3).to(in).cuda();
  auto t = targets(rows, V, gen);
  auto ref = reference(logits, t, V, scale);
  auto loss = torch::empty({rows}, logits.options().dtype(torch::kFloat));
  auto grad = in_place ? logits : torch::empty({rows, cols}, logits.options().dtype(out));
  accel::kernels::softmax_cross_entropy(logits, t, V, -100, loss, grad, scale);
  const auto l = loss.cpu().to(torch::kDouble), rl = ref.loss.cpu();
  EXPECT_LE(((l - rl).abs() - 2e-5 * rl.abs()).max().item<double>(), 1e-5);
  const auto gd = grad.cpu().to(torch::kDouble), rg = ref.grad.cpu();
  const double rel = out == torch::kFloat ? 0.0 : std::ldexp(1.0, -8);
  EXPECT_LE(((gd - rg).abs() - rel * rg.abs()).max().item<double>(), 2e-6 * scale);
  // Ignored rows: loss 0, gradient 0; padding columns: gradient 0.
  if (rows > 3) {
    EXPECT_EQ(l[3].item<double>(), 0.0);
    EXPECT_EQ(gd[3].abs().max().item<double>(), 0.0);
  }
  if (cols > V) {
    EXPECT_EQ(gd.narrow(1, V, cols - V).abs().max().item<double>(), 0.0);
  }
}
#endif

}  // namespace

TEST(SoftmaxCrossEntropyKernelGpu, MatchesFloat64AtGpt2Vocab) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  for (auto in : {torch::kFloat, torch::kBFloat16})
    for (auto out : {torch::kFloat, torch::kBFloat16}) {
      expect_kernel_matches(37, 50257, 50304, in, out, false, 1.0);  // padded: packed loads
      expect_kernel_matches(37, 50257, 50257, in, out, false, 1.0);  // unpadded: one element at a time
    }
#endif
}

TEST(SoftmaxCrossEntropyKernelGpu, OddSizesInPlaceAndScale) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  expect_kernel_matches(1, 1, 1, torch::kFloat, torch::kFloat, false, 1.0);
  expect_kernel_matches(513, 1001, 1001, torch::kFloat, torch::kFloat, false, 0.25);
  expect_kernel_matches(300, 1001, 1024, torch::kBFloat16, torch::kBFloat16, false, 1.0 / 300);
  expect_kernel_matches(129, 50257, 50304, torch::kFloat, torch::kFloat, true, 1.0);
  expect_kernel_matches(3, 5000, 5000, torch::kBFloat16, torch::kBFloat16, true, 1.0);
#endif
}

TEST(SoftmaxCrossEntropyKernelGpu, LossOnlyAndTargetOutOfRange) {
  REQUIRE_KERNELS();
#if ACCEL_CUDA_KERNELS
  auto gen = at::detail::createCPUGenerator(5);
  auto logits = torch::randn({4, 640}, gen).cuda();
  auto t = torch::tensor({3, 639, -100, 640}, torch::kLong).cuda();  // the last is out of range
  auto loss = torch::empty({4}, logits.options());
  accel::kernels::softmax_cross_entropy(logits, t, 640, -100, loss, torch::Tensor());
  auto ref = reference(logits, torch::tensor({3, 639, -100, -100}, torch::kLong).cuda(), 640, 1.0);
  auto l = loss.cpu();
  EXPECT_NEAR(l[0].item<double>(), ref.loss[0].item<double>(), 1e-5);
  EXPECT_NEAR(l[1].item<double>(), ref.loss[1].item<double>(), 1e-5);
  EXPECT_EQ(l[2].item<double>(), 0.0);
  EXPECT_TRUE(std::isnan(l[3].item<double>()));
  auto grad = torch::empty_like(logits);
  accel::kernels::softmax_cross_entropy(logits, t, 640, -100, loss, grad);
  EXPECT_TRUE(grad[3].isnan().all().item<bool>());
  EXPECT_THROW(accel::kernels::softmax_cross_entropy(logits, t, 641, -100, loss, grad), std::invalid_argument);
  EXPECT_THROW(accel::kernels::softmax_cross_entropy(logits, t.to(torch::kInt), 640, -100, loss, grad),
               std::invalid_argument);
#endif
}

namespace {

// linear_cross_entropy with and without the kernel: loss, grad of hidden
// and of weight.
std::vector<torch::Tensor> lce(bool kernel, bool autocast, bool float32_logits = true) {
  auto gen = at::detail::createCPUGenerator(9);
  const int64_t V = 50257;
  auto h = torch::randn({2, 500, 96}, gen).cuda().requires_grad_();
  auto w = (torch::randn({V, 96}, gen) * 0.05).cuda().requires_grad_();
  auto t = torch::randint(0, V, {2, 500}, gen);
  t.index_put_({0, torch::indexing::Slice(0, 40)}, -100);
  t = t.cuda();
  const auto o = accel::LinearCrossEntropyOptions().chunk_size(300).fused_kernel(kernel).float32_logits(float32_logits);
  torch::Tensor loss;
  {
    accel::AutocastGuard guard(torch::kCUDA, torch::kBFloat16, autocast);
    loss = accel::linear_cross_entropy(h, w, t, o);
  }
  loss.backward();
  return {loss.detach().cpu().to(torch::kDouble), h.grad().cpu().to(torch::kDouble), w.grad().cpu().to(torch::kDouble)};
}

void expect_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, double loss_tol,
                  double grad_rel) {
  EXPECT_NEAR(a[0].item<double>(), b[0].item<double>(), loss_tol);
  for (int i = 1; i < 3; ++i) {
    const double scale = b[i].abs().max().item<double>();
    EXPECT_LE((a[i] - b[i]).abs().max().item<double>(), grad_rel * scale) << "gradient " << i;
  }
}

}  // namespace

TEST(SoftmaxCrossEntropyKernelGpu, LinearCrossEntropyWithTheKernelMatchesItsAtenPath) {
  REQUIRE_KERNELS();
  // float32: the same math, float32 rounding apart.
  expect_close(lce(true, false), lce(false, false), 1e-5, 1e-4);
  // bf16 autocast: both write the logit gradient in bf16 from float32
  // softmax values; the GEMMs are the same.
  expect_close(lce(true, true), lce(false, true), 1e-4, 1e-2);
  // bf16 logits: the kernel reads them as they are (and writes the
  // gradient over them), the ATen path through a float32 copy.
  expect_close(lce(true, true, false), lce(false, true, false), 1e-4, 1e-2);
}
