// save_model_slices of a model split by tensor and pipeline parallelism
// (checkpoint/model_slices.h): GPT-2 tiny (vocabulary 501, not divisible by
// tp) at tp=2 x pp=2 on 4 ranks, each rank writing its stage's slices under
// the whole model's names; `accel merge-weights` joins the folder into one
// model.safetensors that loads into the unsplit model with exactly the
// weights a single process made from the same seed. Then the folder broken
// three ways is refused by merge_weights (what the command runs), naming
// what is wrong.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>

#include "accel/checkpoint/merge_weights.h"
#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/model_slices.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/dist/collectives.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/state.h"
#include "gpt2/model.h"
#include "gpt2/pipeline_parallel.h"
#include "gpt2/tensor_parallel.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using namespace accel;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

namespace {

gpt2::GPT2Options options() { return gpt2::named_config("tiny").vocab_size(501); }

// The same model on every rank and in the reference: seeded, with random
// biases and gains too (they start at 0 and 1, where misplaced slices hide).
gpt2::GPT2 make_model() {
  seed_cpu(3);
  gpt2::GPT2 model(options());
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters())
    if (p.dim() == 1) p.add_(torch::randn_like(p) * 0.1);
  return model;
}

// A copy of the folder `from` to break.
fs::path copy_of(const fs::path& from, const fs::path& to) {
  fs::copy(from, to, fs::copy_options::recursive);
  return to;
}

}  // namespace

TEST(PipelineCheckpoint, TensorTimesPipelineSlicesMergeIntoTheWholeModel) {
  const accel::testing::TempDir dir("pipeline_checkpoint");
  const fs::path ckpt = dir / "ckpt";
  run_distributed(4, [&] {
    ParallelismConfig config;
    config.pp_size = 2;
    config.tp_size = 2;
    DeviceMesh mesh(state(), config);
    auto model = make_model();
    gpt2::parallelize_tensor(model, mesh.group("tp"));
    auto stage = gpt2::pipeline_stage(model, mesh.group("pp"));
    save_model_slices(*model, mesh, ckpt);
    wait_for_everyone();
    // One file per (stage, tp rank), the whole model's names in each.
    EXPECT_EQ(slice_file_world_size(ckpt / "model_fsdp_rank3.safetensors"), 4);
  });

  // The command line joins them.
  const auto cli = accel::testing::run_program(
      {accel::testing::binary_path("accel"), "merge-weights", ckpt.string(), (dir / "merged").string()},
      dir / "merge.log");
  ASSERT_EQ(cli.status, 0) << cli.output;
  auto reference = make_model();
  seed_cpu(4);
  gpt2::GPT2 loaded(options());
  const auto report = load_model_weights(*loaded, dir / "merged");
  EXPECT_TRUE(report.ok()) << report.describe();
  for (const auto& p : reference->named_parameters())
    EXPECT_TRUE(loaded->named_parameters()[p.key()].equal(p.value())) << p.key() << " as merged";

  // A missing rank, a rank's file standing in for another's (its blocks
  // missing), and a slice that overlaps another: each refused, named.
  const auto missing = copy_of(ckpt, dir / "missing");
  fs::remove(missing / "model_fsdp_rank3.safetensors");
  accel::testing::expect_error([&] { merge_weights(missing, dir / "out1"); }, {"rank(s) 3", "missing"});

  const auto swapped = copy_of(ckpt, dir / "swapped");
  fs::copy_file(swapped / "model_fsdp_rank2.safetensors", swapped / "model_fsdp_rank3.safetensors",
                fs::copy_options::overwrite_existing);
  accel::testing::expect_error([&] { merge_weights(swapped, dir / "out2"); }, {"do not hold element"});

  // Rank 3 claiming c_fc rows shifted by one: they overlap rank 2's.
  const auto overlapping = copy_of(ckpt, dir / "overlapping");
  const std::string c_fc = "transformer.h.1.mlp.c_fc.weight";
  const auto whole = reference->named_parameters()[c_fc];
  const int64_t half = whole.size(0) / 2;
  save_slices({Slice{c_fc, whole.narrow(0, half - 1, half), c_fc, whole.sizes().vec(), torch::kFloat, 0,
                     std::vector<int64_t>{half - 1, 0}}},
              overlapping / "model_fsdp_rank3.safetensors", 4);
  accel::testing::expect_error([&] { merge_weights(overlapping, dir / "out3"); },
                               {"'" + c_fc + "' overlap", "model_fsdp_rank2", "model_fsdp_rank3"});
  EXPECT_FALSE(fs::exists(dir / "out3" / "model.safetensors"));
}
