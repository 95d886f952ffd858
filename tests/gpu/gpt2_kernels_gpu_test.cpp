// The GPT-2 example's training gradients with accel's CUDA kernels (fused
// LayerNorms, the GEMM epilogues, the fused loss) against the same model in
// float64 (where every accel op runs its ATen composition), at GPT-2 124M's
// real widths and a 1024-token sequence (the GEMM shapes of training), two
// blocks. Each parameter's gradient must match within the run's precision:
// bf16 autocast (each op rounds to bf16) and float32 without TF32. A
// gradient the kernels get wrong (a missed or doubled term) is off by far
// more, for its parameter alone; the test names the worst ones.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <ATen/Context.h>
#include <torch/torch.h>

#include "accel/amp/autocast.h"
#include "gpt2/config.h"
#include "gpt2/model.h"
#include "support/cuda.h"

namespace {

struct Gradients {
  torch::Tensor loss;
  std::vector<std::pair<std::string, torch::Tensor>> grads;  // on the CPU, float64
};

Gradients train_once(gpt2::GPT2& net, const torch::Tensor& tokens, const torch::Tensor& targets,
                     std::optional<torch::ScalarType> autocast) {
  net->zero_grad();
  torch::Tensor loss;
  {
    std::optional<accel::AutocastGuard> guard;
    if (autocast) guard.emplace(torch::kCUDA, *autocast);
    loss = net->forward(tokens, targets);
  }
  loss.backward();
  Gradients out{loss.detach().cpu().to(torch::kDouble), {}};
  for (const auto& p : net->named_parameters())
    out.grads.emplace_back(p.key(), p.value().grad().cpu().to(torch::kDouble));
  return out;
}

// Each gradient's relative error (of its norm) against float64's; checks
// them and prints the worst.
void expect_close(const Gradients& got, const Gradients& want, double tolerance, const char* run) {
  SCOPED_TRACE(run);
  EXPECT_LT((got.loss - want.loss).abs().item<double>(), tolerance * want.loss.abs().item<double>());
  std::vector<std::pair<double, std::string>> errors;
  for (size_t i = 0; i < got.grads.size(); ++i) {
    const auto& [name, g] = got.grads[i];
    const auto& w = want.grads[i].second;
    ASSERT_EQ(name, want.grads[i].first);
    errors.emplace_back(((g - w).norm() / w.norm().clamp_min(1e-30)).item<double>(), name);
  }
  std::sort(errors.rbegin(), errors.rend());
  std::string worst;
  for (size_t i = 0; i < std::min<size_t>(6, errors.size()); ++i)
    worst += "  " + errors[i].second + " " + std::to_string(errors[i].first) + "\n";
  GTEST_LOG_(INFO) << run << ": the largest relative gradient errors\n" << worst;
  for (const auto& [error, name] : errors) EXPECT_LT(error, tolerance) << name;
}

}  // namespace

TEST(Gpt2KernelsGpu, GradientsAtTrainingShapesTrackFloat64) {
  REQUIRE_CUDA();
  const auto options = gpt2::named_config("124M").n_layer(2);
  torch::manual_seed(3);
  gpt2::GPT2 net(options), net64(options);
  net->to(torch::kCUDA);
  net64->to(torch::kCUDA, torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    const auto source = net->named_parameters();
    for (auto& p : net64->named_parameters()) p.value().copy_(source[p.key()]);
  }
  auto g = at::detail::createCPUGenerator(4);
  const auto tokens = torch::randint(options.vocab_size(), {8, 1024}, g).cuda();
  const auto targets = torch::randint(options.vocab_size(), {8, 1024}, g).cuda();

  const auto reference = train_once(net64, tokens, targets, std::nullopt);
  expect_close(train_once(net, tokens, targets, torch::kBFloat16), reference, 3e-2, "bf16 autocast");
  const bool tf32 = at::globalContext().allowTF32CuBLAS();
  at::globalContext().setAllowTF32CuBLAS(false);
  expect_close(train_once(net, tokens, targets, std::nullopt), reference, 1e-3, "float32, no TF32");
  at::globalContext().setAllowTF32CuBLAS(tf32);
}
