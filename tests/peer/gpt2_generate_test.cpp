// Generation with the GPT-2 example (examples/gpt2/generate.h), on the CPU:
// the KV cache gives the logits of the full forward (a prompt at once, in
// pieces, or a token at a time) and the greedy tokens of generation without
// a cache; a model dispatched over the CPU and the "disk", or offloaded
// whole, generates what the model on one device does; seeded sampling
// repeats; bad options are refused by value. (In test_peer, which compiles
// the example's sources; the comparison with transformers is
// gpt2_generate_peer_test.cpp.)
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/big_model/dispatch.h"
#include "accel/big_model/hooks.h"
#include "gpt2/generate.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/temp_dir.h"

using accel::testing::expect_error;
using accel::testing::TempDir;

namespace {

gpt2::GPT2Options small() { return gpt2::GPT2Options().n_layer(3).n_head(4).n_embd(32).n_positions(48).vocab_size(97); }

// The same weights every time (a fixed seed), in eval mode.
gpt2::GPT2 make_model() {
  accel::testing::seed_cpu(5);
  gpt2::GPT2 model(small());
  model->eval();
  return model;
}

torch::Tensor prompt(int64_t batch, int64_t length, uint64_t seed = 3) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randint(small().vocab_size(), {batch, length}, g, torch::kLong);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace

TEST(Gpt2Generate, CachedForwardGivesTheFullForwardsLogits) {
  auto model = make_model();
  torch::NoGradGuard no_grad;
  auto tokens = prompt(2, 20);
  auto full = model(tokens);
  // A prompt in pieces (7, then 5 after cached positions: the mask that is
  // not SDPA's top-left causal one), then one token at a time.
  gpt2::KVCache cache(small().n_layer());
  std::vector<torch::Tensor> pieces{model->forward(tokens.slice(1, 0, 7), {}, &cache)};
  EXPECT_EQ(cache.length(), 7);
  pieces.push_back(model->forward(tokens.slice(1, 7, 12), {}, &cache));
  for (int64_t t = 12; t < 20; ++t) pieces.push_back(model->forward(tokens.slice(1, t, t + 1), {}, &cache));
  EXPECT_EQ(cache.length(), 20);
  EXPECT_EQ(cache.layer(2).keys.sizes(), torch::IntArrayRef({2, 4, 20, 8}));
  auto cached = torch::cat(pieces, 1);
  ASSERT_EQ(cached.sizes(), full.sizes());
  EXPECT_LT(max_diff(cached, full), 1e-5);
}

TEST(Gpt2Generate, CachedForwardRefusesMorePositionsThanTheModelHas) {
  auto model = make_model();
  torch::NoGradGuard no_grad;
  gpt2::KVCache cache(small().n_layer());
  model->forward(prompt(1, 40), {}, &cache);
  expect_error([&] { model->forward(prompt(1, 9), {}, &cache); },
               {"49 tokens (40 cached + 9 new)", "n_positions = 48"});
}

TEST(Gpt2Generate, GreedyWithTheCacheEqualsRecomputingTheSequence) {
  auto model = make_model();
  auto options = gpt2::GenerateOptions().max_new_tokens(25).output_logits(true);
  auto input = prompt(3, 6);
  auto cached = gpt2::generate(model, input, options);
  auto recomputed = gpt2::generate(model, input, gpt2::GenerateOptions(options).use_cache(false));
  ASSERT_EQ(cached.tokens.sizes(), torch::IntArrayRef({3, 31}));
  EXPECT_TRUE(torch::equal(cached.tokens.slice(1, 0, 6), input)) << "the prompt leads the output";
  EXPECT_TRUE(torch::equal(cached.tokens, recomputed.tokens));
  ASSERT_EQ(cached.logits.size(), 25u);
  for (size_t i = 0; i < cached.logits.size(); ++i) {
    EXPECT_LT(max_diff(cached.logits[i], recomputed.logits[i]), 1e-5) << "step " << i;
    // Greedy: each new token is the argmax of that step's logits.
    EXPECT_TRUE(torch::equal(cached.logits[i].argmax(-1), cached.tokens.select(1, 6 + static_cast<int64_t>(i))));
  }
  EXPECT_FALSE(model->is_training()) << "eval before stays eval";
}

TEST(Gpt2Generate, PutsTheModelsTrainingModeBack) {
  auto model = make_model();
  model->train();
  gpt2::generate(model, prompt(1, 4), gpt2::GenerateOptions().max_new_tokens(2));
  EXPECT_TRUE(model->is_training());
}

TEST(Gpt2Generate, EosFinishesASequenceAndPadsIt) {
  auto model = make_model();
  auto input = prompt(3, 5);
  auto free_run = gpt2::generate(model, input, gpt2::GenerateOptions().max_new_tokens(12)).tokens;
  // The token row 0 produces third becomes the end: row 0 ends there, the
  // others where (if) they produce it, and finished rows get the pad token.
  const int64_t eos = free_run[0][5 + 2].item<int64_t>();
  auto out =
      gpt2::generate(model, input, gpt2::GenerateOptions().max_new_tokens(12).eos_token_id(eos).pad_token_id(0)).tokens;
  ASSERT_LE(out.size(1), free_run.size(1));
  for (int64_t b = 0; b < 3; ++b) {
    bool finished = false;
    for (int64_t t = 5; t < out.size(1); ++t) {
      const int64_t expected = finished ? 0 : free_run[b][t].item<int64_t>();
      EXPECT_EQ(out[b][t].item<int64_t>(), expected) << "row " << b << " position " << t;
      finished = finished || expected == eos;
    }
  }
  // It stops once every row is finished (or at max_new_tokens).
  bool all_done_earlier = true;
  for (int64_t b = 0; b < 3; ++b) {
    bool seen = false;
    for (int64_t t = 5; t < out.size(1) - 1; ++t) seen = seen || out[b][t].item<int64_t>() == eos;
    all_done_earlier = all_done_earlier && seen;
  }
  EXPECT_FALSE(all_done_earlier) << "kept generating after every row had ended";
}

TEST(Gpt2Generate, DispatchedOverCpuAndDiskGeneratesWhatOneDeviceDoes) {
  auto reference = make_model();
  auto options = gpt2::GenerateOptions().max_new_tokens(20).output_logits(true);
  auto input = prompt(2, 5);
  auto expected = gpt2::generate(reference, input, options);

  TempDir dir("generate_dispatch");
  auto model = make_model();
  const auto placed = accel::dispatch_model(
      *model, accel::DispatchOptions()
                  .device_map({{"", "cpu"}, {"transformer.h.0", "disk"}, {"transformer.h.2", "disk"}})
                  .offload_dir(dir.path()));
  ASSERT_TRUE(model->transformer->h[0]->parameters()[0].is_meta()) << "block 0 is offloaded between forwards";
  auto got = gpt2::generate(model, input, options);
  EXPECT_TRUE(torch::equal(got.tokens, expected.tokens));
  for (size_t i = 0; i < got.logits.size(); ++i) EXPECT_LT(max_diff(got.logits[i], expected.logits[i]), 1e-6);
  EXPECT_TRUE(model->transformer->h[0]->parameters()[0].is_meta());
}

TEST(Gpt2Generate, OffloadedWholeThroughTheRootUnitGeneratesWhatOneDeviceDoes) {
  auto reference = make_model();
  auto options = gpt2::GenerateOptions().max_new_tokens(15);
  auto input = prompt(2, 7);
  auto expected = gpt2::generate(reference, input, options).tokens;

  TempDir dir("generate_disk_offload");
  auto on_disk = make_model();
  accel::Unit<gpt2::GPT2> disk_root(on_disk, "GPT2LMHeadModel");
  accel::disk_offload(*on_disk, dir.path(), c10::kCPU);
  ASSERT_TRUE(on_disk->transformer->wte->weight.is_meta()) << "the model's own tensors are offloaded too";
  expect_error<std::invalid_argument>([&] { gpt2::generate(on_disk, input, options); },
                                      {"meta device", "accel::Unit<gpt2::GPT2>"});
  EXPECT_TRUE(torch::equal(gpt2::generate(disk_root, input, options).tokens, expected));

  auto in_host = make_model();
  accel::Unit<gpt2::GPT2> host_root(in_host, "GPT2LMHeadModel");
  accel::cpu_offload(*in_host, c10::kCPU);
  EXPECT_TRUE(torch::equal(gpt2::generate(host_root, input, options).tokens, expected));
}

TEST(Gpt2Generate, SeededSamplingRepeatsAndSeedsDiffer) {
  auto model = make_model();
  auto input = prompt(2, 4);
  auto options = gpt2::GenerateOptions().max_new_tokens(30).do_sample(true).seed(17);
  options.sampling.temperature(1.5).top_k(20).top_p(0.95);
  auto first = gpt2::generate(model, input, options).tokens;
  auto again = gpt2::generate(model, input, options).tokens;
  EXPECT_TRUE(torch::equal(first, again));
  auto other = gpt2::generate(model, input, gpt2::GenerateOptions(options).seed(18)).tokens;
  EXPECT_FALSE(torch::equal(first, other));
  // Sampling differs from greedy, and top_k 1 leaves only the greedy token.
  auto greedy = gpt2::generate(model, input, gpt2::GenerateOptions().max_new_tokens(30)).tokens;
  EXPECT_FALSE(torch::equal(first, greedy));
  auto top1 = options;
  top1.sampling.top_k(1);
  EXPECT_TRUE(torch::equal(gpt2::generate(model, input, top1).tokens, greedy));
}

TEST(Gpt2Generate, FilterKeepsTheTopKAndTheTopP) {
  // Probabilities 0.4, 0.3, 0.2, 0.1 (log-probabilities as logits).
  auto logits = torch::tensor({0.1, 0.4, 0.2, 0.3}).log().unsqueeze(0);
  const float inf = std::numeric_limits<float>::infinity();
  auto kept = [&](int64_t k, double p) {
    gpt2::SamplingOptions o;
    o.top_k(k).top_p(p);
    return gpt2::filter_logits(logits, o).isfinite()[0];
  };
  EXPECT_TRUE(torch::equal(kept(2, 1.0), torch::tensor({false, true, false, true})));
  EXPECT_TRUE(torch::equal(kept(0, 1.0), torch::tensor({true, true, true, true})));
  // top_p 0.6: 0.4 alone is not enough, 0.4 + 0.3 is.
  EXPECT_TRUE(torch::equal(kept(0, 0.6), torch::tensor({false, true, false, true})));
  EXPECT_TRUE(torch::equal(kept(0, 0.3), torch::tensor({false, true, false, false})));
  gpt2::SamplingOptions hot;
  hot.temperature(2.0).top_k(0);
  EXPECT_TRUE(torch::allclose(gpt2::filter_logits(logits, hot), logits / 2.0));
  EXPECT_EQ(gpt2::filter_logits(logits, gpt2::SamplingOptions().top_k(1))[0][2].item<float>(), -inf);
}

TEST(Gpt2Generate, RefusesBadOptionsNamingTheValue) {
  auto model = make_model();
  auto input = prompt(1, 8);
  auto sampled = [] { return gpt2::GenerateOptions().max_new_tokens(3).do_sample(true); };
  using E = std::invalid_argument;
  expect_error<E>([&] { gpt2::generate(model, input, gpt2::GenerateOptions().max_new_tokens(41)); },
                  {"max_new_tokens 41", "8 tokens", "49 positions", "n_positions 48"});
  expect_error<E>([&] { gpt2::generate(model, input, gpt2::GenerateOptions().max_new_tokens(0)); },
                  {"max_new_tokens is 0"});
  auto o = sampled();
  o.sampling.top_p(0.0);
  expect_error<E>([&] { gpt2::generate(model, input, o); }, {"top_p is 0", "(0, 1]"});
  o.sampling.top_p(1.5);
  expect_error<E>([&] { gpt2::generate(model, input, o); }, {"top_p is 1.5"});
  o = sampled();
  o.sampling.top_k(-1);
  expect_error<E>([&] { gpt2::generate(model, input, o); }, {"top_k is -1", ">= 0"});
  o = sampled();
  o.sampling.temperature(0);
  expect_error<E>([&] { gpt2::generate(model, input, o); }, {"temperature is 0", "> 0"});
  // Sampling options do not matter to greedy generation (transformers ignores them too).
  o.do_sample(false);
  EXPECT_NO_THROW(gpt2::generate(model, input, o));
  expect_error<E>([&] { gpt2::generate(model, input.to(torch::kInt), gpt2::GenerateOptions()); },
                  {"dtype Int", "int64"});
  expect_error<E>([&] { gpt2::generate(model, input.flatten(), gpt2::GenerateOptions()); }, {"[8]", "[batch, seq]"});
  expect_error<E>([&] { gpt2::generate(model, input + 90, gpt2::GenerateOptions()); }, {"[0, 97)"});
  expect_error<E>([&] { gpt2::generate(model, input, gpt2::GenerateOptions().eos_token_id(97)); },
                  {"eos_token_id is 97"});
}
