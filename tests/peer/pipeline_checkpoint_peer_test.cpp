// transformers loads what a split run saved: GPT-2 tiny at tp=2 x pp=2 on 4
// ranks writes its slices (save_model_slices), merge_weights (what
// `accel merge-weights` runs) joins them into one model.safetensors, the
// unsplit C++ model loads it and writes transformers' layout
// (gpt2::save_pretrained, examples/gpt2/hf_checkpoint.h); GPT2LMHeadModel's
// logits from that folder equal those of the single-process model made from
// the same seed, within 1e-4.
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/checkpoint/merge_weights.h"
#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/model_slices.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/dist/collectives.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/state.h"
#include "accel_test_paths.h"
#include "gpt2/hf_checkpoint.h"
#include "gpt2/pipeline_parallel.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
namespace st = accel::safetensors;
using namespace accel;

namespace {

constexpr int64_t kVocab = 501;  // not divisible by tp = 2

// The same model on every rank and in the reference: seeded, with random
// biases and gains too (they start at 0 and 1, where misplaced slices hide).
gpt2::GPT2 make_model() {
  accel::testing::seed_cpu(3);
  gpt2::GPT2 model(gpt2::named_config("tiny").vocab_size(kVocab));
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters())
    if (p.dim() == 1) p.add_(torch::randn_like(p) * 0.1);
  return model;
}

}  // namespace

TEST(PipelineCheckpointPeer, TransformersLoadsTheMergedSlicesOfTensorTimesPipeline) {
  REQUIRE_PEERS("torch", "safetensors", "transformers");
  const accel::testing::TempDir dir("pipeline_checkpoint_peer");
  accel::testing::run_distributed(4, [&] {
    ParallelismConfig config;
    config.pp_size = 2;
    config.tp_size = 2;
    DeviceMesh mesh(state(), config);
    auto model = make_model();
    gpt2::parallelize_tensor(model, mesh.group("tp"));
    auto stage = gpt2::pipeline_stage(model, mesh.group("pp"));
    save_model_slices(*model, mesh, dir / "ckpt");
    wait_for_everyone();
  });
  merge_weights(dir / "ckpt", dir / "merged");
  gpt2::GPT2 merged(gpt2::named_config("tiny").vocab_size(kVocab));
  const auto report = load_model_weights(*merged, dir / "merged");
  ASSERT_TRUE(report.ok()) << report.describe();
  gpt2::save_pretrained(*merged, dir / "hf");

  const auto ids = torch::randint(kVocab, {2, 24}, torch::kLong);
  st::save_file({{"input_ids", ids}}, dir / "ids.safetensors");
  const std::string cmd = "env HF_HOME=" + dir.path().string() + " " + ACCEL_PYTHON + " " +
                          accel::testing::peer_script("gpt2_peer.py") + " logits " + (dir / "hf").string() + " " +
                          (dir / "ids.safetensors").string() + " " + (dir / "theirs.safetensors").string();
  const auto run = accel::testing::run_shell(cmd, dir / "peer.log");
  ASSERT_EQ(run.status, 0) << cmd << "\n" << run.output;

  auto reference = make_model();
  reference->eval();
  torch::NoGradGuard no_grad;
  const auto theirs = st::load_file(dir / "theirs.safetensors")["logits"];
  const auto ours = reference(ids);
  ASSERT_EQ(ours.sizes(), theirs.sizes());
  EXPECT_LT((ours - theirs).abs().max().item<double>(), 1e-4) << "max |single process - transformers on the merge|";
}
