// Generation with the GPT-2 example (examples/gpt2/generate.h) on a GPU: a
// model split between the GPU and pinned host memory (offloaded blocks
// brought in per block, the next prefetched on a side stream), and one
// with its own tensors offloaded too (through its root unit), generate the
// greedy tokens of the whole model on the GPU, with the same logits; each
// layer's cache stays on its block's device; seeded sampling repeats on the
// GPU and equals sampling on the CPU.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/big_model/dispatch.h"
#include "gpt2/generate.h"
#include "support/cuda.h"

namespace {

gpt2::GPT2Options small() {
  return gpt2::GPT2Options().n_layer(4).n_head(4).n_embd(64).n_positions(96).vocab_size(301);
}

gpt2::GPT2 make_model() {
  torch::manual_seed(8);
  gpt2::GPT2 model(small());
  model->eval();
  return model;
}

torch::Tensor prompt() {
  return torch::randint(301, {2, 9}, at::make_generator<at::CPUGeneratorImpl>(2), torch::kLong);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.cpu() - b.cpu()).abs().max().item<double>();
}

}  // namespace

TEST(Gpt2GenerateGpu, GpuAndCpuSplitGeneratesWhatTheGpuDoes) {
  REQUIRE_CUDA();
  auto options = gpt2::GenerateOptions().max_new_tokens(40).output_logits(true);
  auto reference = make_model();
  reference->to(torch::kCUDA);
  const auto expected = gpt2::generate(reference, prompt().cuda(), options);

  auto model = make_model();
  const auto placed = accel::dispatch_model(
      *model,
      accel::DispatchOptions().device_map(
          {{"", "cuda:0"}, {"transformer.h.1", "cpu"}, {"transformer.h.2", "cpu"}, {"transformer.h.3", "cpu"}}));
  EXPECT_EQ(placed.main_device, c10::Device("cuda:0"));
  EXPECT_TRUE(model->transformer->h[2]->parameters()[0].is_meta()) << "offloaded between forwards";
  const auto got = gpt2::generate(model, prompt(), options);  // a CPU prompt: moved to the embedding's device
  EXPECT_TRUE(got.tokens.device().is_cpu()) << "tokens come back to the prompt's device";
  EXPECT_TRUE(torch::equal(got.tokens, expected.tokens.cpu()));
  for (size_t i = 0; i < got.logits.size(); ++i) EXPECT_LT(max_diff(got.logits[i], expected.logits[i]), 1e-4);

  // Each layer's cache on its block's execution device (all cuda:0 here).
  gpt2::KVCache cache(small().n_layer());
  {
    torch::NoGradGuard no_grad;
    model->forward(prompt().cuda(), {}, &cache);
  }
  for (int64_t i = 0; i < small().n_layer(); ++i) EXPECT_TRUE(cache.layer(i).keys.is_cuda()) << "layer " << i;
}

TEST(Gpt2GenerateGpu, OffloadedWholeThroughTheRootUnitGeneratesWhatTheGpuDoes) {
  REQUIRE_CUDA();
  auto options = gpt2::GenerateOptions().max_new_tokens(30);
  auto reference = make_model();
  reference->to(torch::kCUDA);
  const auto expected = gpt2::generate(reference, prompt().cuda(), options).tokens.cpu();

  auto model = make_model();
  accel::Unit<gpt2::GPT2> root(model, "GPT2LMHeadModel");
  accel::cpu_offload(*model, torch::Device("cuda:0"));
  ASSERT_TRUE(model->transformer->wte->weight.is_meta());
  EXPECT_TRUE(torch::equal(gpt2::generate(root, prompt(), options).tokens, expected));
  // Half precision, blocks split between the GPU and the CPU.
  auto half = make_model();
  accel::Unit<gpt2::GPT2> half_root(half, "GPT2LMHeadModel");
  accel::dispatch_model(*half, accel::DispatchOptions()
                                   .device_map({{"", "cuda:0"}, {"transformer.h.0", "cpu"}, {"transformer.h.3", "cpu"}})
                                   .dtype(torch::kHalf));
  auto on_gpu = make_model();
  on_gpu->to(torch::kCUDA, torch::kHalf);
  EXPECT_TRUE(torch::equal(gpt2::generate(half_root, prompt().cuda(), options).tokens.cpu(),
                           gpt2::generate(on_gpu, prompt().cuda(), options).tokens.cpu()));
}

TEST(Gpt2GenerateGpu, SeededSamplingRepeatsAndEqualsTheCpus) {
  REQUIRE_CUDA();
  auto options = gpt2::GenerateOptions().max_new_tokens(30).do_sample(true).seed(5);
  options.sampling.top_k(30).top_p(0.9);
  auto cpu_model = make_model();
  const auto on_cpu = gpt2::generate(cpu_model, prompt(), options).tokens;
  auto model = make_model();
  model->to(torch::kCUDA);
  const auto first = gpt2::generate(model, prompt().cuda(), options).tokens.cpu();
  EXPECT_TRUE(torch::equal(first, gpt2::generate(model, prompt().cuda(), options).tokens.cpu()));
  EXPECT_TRUE(torch::equal(first, on_cpu)) << "the draws are made on the CPU from the same seed";
}
