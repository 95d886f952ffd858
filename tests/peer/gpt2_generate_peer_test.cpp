// Generation with the GPT-2 example (examples/gpt2/generate.h) against
// transformers' GPT2LMHeadModel.generate on the same weights (saved by the
// example, loaded by transformers, fp32): greedy tokens equal; sampled
// tokens with the same seed equal (both draw with torch.multinomial from a
// CPU generator seeded alike); and the filtered scores equal transformers'
// Temperature, TopK and TopP warpers exactly, ties included.
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/checkpoint/safetensors.h"
#include "accel_test_paths.h"
#include "gpt2/generate.h"
#include "gpt2/hf_checkpoint.h"
#include "support/distributed.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
namespace st = accel::safetensors;
using accel::testing::peer_script;
using accel::testing::run_shell;
using accel::testing::TempDir;

namespace {

class Gpt2GeneratePeer : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_PEERS("torch", "safetensors", "transformers"); }

  void peer(const std::string& args) {
    const std::string cmd = "env HF_HOME=" + dir_.path().string() + " " + ACCEL_PYTHON + " " +
                            peer_script("gpt2_generate_peer.py") + " " + args;
    const auto run = run_shell(cmd, dir_ / "peer.log");
    ASSERT_EQ(run.status, 0) << cmd << "\n" << run.output;
  }

  // A small random model (random biases and gains too), saved for
  // transformers, and a prompt.
  gpt2::GPT2 saved_model() {
    accel::testing::seed_cpu(21);
    gpt2::GPT2 model(gpt2::GPT2Options().n_layer(3).n_head(4).n_embd(48).n_positions(64).vocab_size(211));
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters())
      if (p.dim() == 1) p.add_(torch::randn_like(p) * 0.1);
    gpt2::save_pretrained(*model, dir_ / "model");
    st::save_file({{"input_ids", ids_}}, dir_ / "ids.safetensors");
    return model;
  }

  torch::Tensor theirs(const std::string& args) {
    const auto out = dir_ / "theirs.safetensors";
    peer("generate " + (dir_ / "model").string() + " " + (dir_ / "ids.safetensors").string() + " " + out.string() +
         " " + args);
    return st::load_file(out)["tokens"];
  }

  TempDir dir_{"gpt2_generate_peer"};
  torch::Tensor ids_ = torch::randint(211, {3, 9}, at::make_generator<at::CPUGeneratorImpl>(4), torch::kLong);
};

}  // namespace

TEST_F(Gpt2GeneratePeer, GreedyTokensEqualTransformers) {
  auto model = saved_model();
  const auto expected = theirs("40");
  if (HasFatalFailure()) return;
  const auto ours = gpt2::generate(model, ids_, gpt2::GenerateOptions().max_new_tokens(40)).tokens;
  ASSERT_EQ(ours.sizes(), expected.sizes());
  EXPECT_TRUE(torch::equal(ours, expected)) << "accel\n" << ours << "\ntransformers\n" << expected;
}

TEST_F(Gpt2GeneratePeer, SeededSamplingEqualsTransformersWithTheSameSeed) {
  auto model = saved_model();
  const auto expected = theirs("30 123 0.8 40 0.9");
  if (HasFatalFailure()) return;
  auto options = gpt2::GenerateOptions().max_new_tokens(30).do_sample(true).seed(123);
  options.sampling.temperature(0.8).top_k(40).top_p(0.9);
  const auto ours = gpt2::generate(model, ids_, options).tokens;
  ASSERT_EQ(ours.sizes(), expected.sizes());
  EXPECT_TRUE(torch::equal(ours, expected)) << "accel\n" << ours << "\ntransformers\n" << expected;
}

TEST_F(Gpt2GeneratePeer, FilteredScoresEqualTransformersWarpers) {
  // Rows of random logits, one with many ties (values rounded to a coarse
  // grid), one peaked, so that the top-k boundary and the top-p cut meet
  // equal values.
  auto g = at::make_generator<at::CPUGeneratorImpl>(9);
  auto logits = torch::randn({4, 300}, g);
  logits[1] = (logits[1] * 2).round() / 2;
  logits[2] = logits[2] * 8;
  logits[3].fill_(0.25);
  st::save_file({{"logits", logits}}, dir_ / "logits.safetensors");
  ASSERT_NO_FATAL_FAILURE(
      peer("warpers " + (dir_ / "logits.safetensors").string() + " " + (dir_ / "warped.safetensors").string()));
  auto warped = st::load_file(dir_ / "warped.safetensors");
  // The script's COMBINATIONS, in its order.
  const std::vector<std::tuple<double, int64_t, double>> combinations = {{1.0, 5, 1.0},  {1.0, 1, 1.0},  {1.0, 0, 0.8},
                                                                         {1.0, 0, 0.05}, {0.7, 10, 1.0}, {1.3, 0, 0.9},
                                                                         {0.5, 20, 0.6}, {2.0, 3, 0.99}};
  ASSERT_EQ(warped.size(), combinations.size());
  for (size_t i = 0; i < combinations.size(); ++i) {
    const auto [temperature, top_k, top_p] = combinations[i];
    gpt2::SamplingOptions o;
    o.temperature(temperature).top_k(top_k).top_p(top_p);
    const auto ours = gpt2::filter_logits(logits, o);
    const auto& expected = warped[std::to_string(i)];
    EXPECT_TRUE(torch::equal(ours, expected))
        << "temperature " << temperature << " top_k " << top_k << " top_p " << top_p << ": kept "
        << ours.isfinite().sum(-1) << " against " << expected.isfinite().sum(-1);
  }
}
