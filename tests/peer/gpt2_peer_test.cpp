// The GPT-2 example's model (examples/gpt2) against transformers'
// GPT2LMHeadModel: a small random model saved by save_pretrained (one file,
// sharded, and the old layout of the hub's gpt2) loads into the C++ model,
// whose fp32 logits for the same tokens equal transformers' within 1e-4;
// and transformers loads what the example saves, with the same logits.
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/checkpoint/safetensors.h"
#include "accel_test_paths.h"
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

constexpr double kTolerance = 1e-4;

class Gpt2Peer : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_PEERS("torch", "safetensors", "transformers"); }

  // Runs tests/peer/scripts/gpt2_peer.py; fails the test with its output
  // when it fails.
  void peer(const std::string& args) {
    const std::string cmd =
        "env HF_HOME=" + dir_.path().string() + " " + ACCEL_PYTHON + " " + peer_script("gpt2_peer.py") + " " + args;
    const auto run = run_shell(cmd, dir_ / "peer.log");
    ASSERT_EQ(run.status, 0) << cmd << "\n" << run.output;
  }

  // The C++ model's logits for the input transformers used, against its logits.
  void expect_same_logits(gpt2::GPT2& model, const fs::path& expected) {
    auto tensors = st::load_file(expected);
    model->eval();
    torch::NoGradGuard no_grad;
    auto logits = model(tensors["input_ids"]);
    ASSERT_EQ(logits.sizes(), tensors["logits"].sizes());
    const double diff = (logits - tensors["logits"]).abs().max().item<double>();
    EXPECT_LT(diff, kTolerance) << "max |accel - transformers| over the logits";
  }

  TempDir dir_{"gpt2_peer"};
};

}  // namespace

TEST_F(Gpt2Peer, LoadsSavePretrainedAndMatchesLogits) {
  ASSERT_NO_FATAL_FAILURE(peer("make " + (dir_ / "hf").string() + " " + (dir_ / "expected.safetensors").string()));
  auto model = gpt2::from_pretrained(dir_ / "hf");
  EXPECT_EQ(model->options().n_layer(), 2);
  EXPECT_EQ(model->options().n_head(), 4);
  EXPECT_EQ(model->options().n_embd(), 64);
  EXPECT_EQ(model->options().n_positions(), 128);
  EXPECT_EQ(model->options().vocab_size(), 500);
  expect_same_logits(model, dir_ / "expected.safetensors");
}

TEST_F(Gpt2Peer, LoadsShardedCheckpoint) {
  ASSERT_NO_FATAL_FAILURE(
      peer("make " + (dir_ / "hf").string() + " " + (dir_ / "expected.safetensors").string() + " 100KB"));
  ASSERT_TRUE(fs::exists(dir_ / "hf" / "model.safetensors.index.json"));
  auto model = gpt2::from_pretrained(dir_ / "hf");
  expect_same_logits(model, dir_ / "expected.safetensors");
}

TEST_F(Gpt2Peer, LoadsTheOldLayoutWithMaskBuffersAndLmHead) {
  ASSERT_NO_FATAL_FAILURE(peer("legacy " + (dir_ / "hf").string() + " " + (dir_ / "expected.safetensors").string()));
  auto model = gpt2::from_pretrained(dir_ / "hf");
  expect_same_logits(model, dir_ / "expected.safetensors");
}

TEST_F(Gpt2Peer, TransformersLoadsWhatTheExampleSaves) {
  accel::testing::seed_cpu(3);
  gpt2::GPT2 model(gpt2::GPT2Options().n_layer(3).n_head(2).n_embd(32).n_positions(64).vocab_size(300));
  // Random biases and gains as well (they start at 0 and 1).
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters())
      if (p.dim() == 1) p.add_(torch::randn_like(p) * 0.1);
  }
  gpt2::save_pretrained(*model, dir_ / "accel");
  const auto ids = torch::randint(300, {3, 17}, torch::kLong);
  st::save_file({{"input_ids", ids}}, dir_ / "ids.safetensors");
  ASSERT_NO_FATAL_FAILURE(peer("logits " + (dir_ / "accel").string() + " " + (dir_ / "ids.safetensors").string() + " " +
                               (dir_ / "theirs.safetensors").string()));
  model->eval();
  torch::NoGradGuard no_grad;
  const auto theirs = st::load_file(dir_ / "theirs.safetensors")["logits"];
  const double diff = (model(ids) - theirs).abs().max().item<double>();
  EXPECT_LT(diff, kTolerance);

  // And the example reads its own folder back to the same weights.
  auto again = gpt2::from_pretrained(dir_ / "accel");
  for (const auto& item : model->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), again->named_parameters()[item.key()])) << item.key();
}
