// Parameter sharding's checkpoints on CPU ranks over Gloo. Under
// SHARDED_STATE_DICT every rank writes its slices of the model and of the
// optimizer state (checkpoint/tensor_slices.h); a run on as many ranks
// resumes exactly, a run on fewer resumes and trains as the saving run
// went on, and an uneven number (4 -> 3) holds exactly the state that was
// saved. The optimizer state reshards under FULL_STATE_DICT too. `accel
// merge-weights` (merge_weights) joins the model's slices.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "accel/checkpoint/merge_weights.h"
#include "accel/checkpoint/tensor_slices.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/fsdp_training.h"
#include "support/temp_dir.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::fsdp_training;
namespace fs = std::filesystem;

namespace {

std::map<std::string, torch::Tensor> as_map(const safetensors::NamedTensors& tensors) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : tensors) out[name] = t;
  return out;
}

// Every whole tensor of the optimizer's slice files of `dir`.
std::map<std::string, torch::Tensor> optimizer_wholes(const fs::path& dir, int ranks) {
  std::vector<fs::path> files;
  for (int r = 0; r < ranks; ++r) files.push_back(dir / ("fsdp_optimizer_rank" + std::to_string(r) + ".safetensors"));
  const SliceSet slices(files);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : slices.wholes()) out[name] = slices.read_whole(name);
  return out;
}

}  // namespace

TEST(ShardedStateDict, ResumesExactlyOnAsManyRanks) {
  TempDir dir;
  run_distributed(2, [&] {
    const Variant v{.accumulation = 2, .offload_param = true, .sharded_state = true};
    Trainer straight(v);
    straight.train(2);
    straight.acc.save_state(dir.path() / "ckpt");
    straight.train(2);
    const auto want = straight.params();
    straight.acc.save_model(*straight.model, dir.path() / "want");

    Trainer resumed(v);
    resumed.acc.load_state(dir.path() / "ckpt");
    resumed.first = straight.first / 2;  // the same rows as the second half
    resumed.train(2);
    EXPECT_EQ(max_diff(resumed.params(), want), 0.0);
  });
  // No rank wrote the whole model; merging the slices gives it back.
  EXPECT_FALSE(fs::exists(dir.path() / "ckpt" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir.path() / "ckpt" / "model_fsdp_rank1.safetensors"));
  merge_weights(dir.path() / "ckpt", dir.path() / "merged");
  const auto merged =
      as_map(safetensors::to_named(safetensors::load_file(dir.path() / "merged" / "model.safetensors")));
  EXPECT_EQ(merged.at("h.1.fc2.weight").sizes().vec(), (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(merged.size(),
            as_map(safetensors::to_named(safetensors::load_file(dir.path() / "want" / "model.safetensors"))).size());
}

TEST(ShardedStateDict, SavedOnFourRanksTrainsOnTwoAsItWouldHaveOnFour) {
  for (bool sharded : {false, true}) {  // the optimizer state reshards under both types
    SCOPED_TRACE(sharded ? "SHARDED_STATE_DICT" : "FULL_STATE_DICT");
    TempDir dir;
    int64_t rows_done = 0;
    run_distributed(4, [&] {
      Trainer four({.world = 4, .sharded_state = sharded});
      four.train(2);
      four.acc.save_state(dir.path() / "ckpt");
      four.train(2);
      four.acc.save_model(*four.model, dir.path() / "want");
    });
    rows_done = 2 * 4 * kRows;
    // Two ranks, two micro-batches each: the same 8 rows per step as four ranks.
    run_distributed(2, [&] {
      Trainer two({.world = 2, .accumulation = 2, .sharded_state = sharded});
      two.acc.load_state(dir.path() / "ckpt");
      two.first = rows_done;
      two.train(2);
      const auto want =
          as_map(safetensors::to_named(safetensors::load_file(dir.path() / "want" / "model.safetensors")));
      EXPECT_LT(max_diff(two.params(), want), 1e-5);
    });
  }
}

TEST(ShardedStateDict, ReshardedToThreeRanksHoldsWhatFourSaved) {
  TempDir dir;
  run_distributed(4, [&] {
    Trainer four({.world = 4, .clip = 0.5, .offload_param = true, .sharded_state = true});
    four.train(3);
    four.acc.save_state(dir.path() / "four");
  });
  // Three ranks (pieces cut at other places, no offload) load it and save it again at once.
  run_distributed(3, [&] {
    Trainer three({.world = 3, .sharded_state = true});
    three.acc.load_state(dir.path() / "four");
    three.acc.save_state(dir.path() / "three");
  });
  const auto saved = optimizer_wholes(dir.path() / "four", 4), again = optimizer_wholes(dir.path() / "three", 3);
  ASSERT_EQ(saved.size(), again.size());
  EXPECT_GT(saved.size(), 0u);
  for (const auto& [name, t] : saved) {
    ASSERT_TRUE(again.count(name)) << name;
    EXPECT_TRUE(torch::equal(again.at(name), t)) << name;
  }
  EXPECT_NE(saved.count("0/h.1.fc1.weight/exp_avg_sq"), 0u);
  const auto model4 = as_map(merged_sliced_weights(dir.path() / "four"));
  const auto model3 = as_map(merged_sliced_weights(dir.path() / "three"));
  ASSERT_EQ(model4.size(), model3.size());
  for (const auto& [name, t] : model4) EXPECT_TRUE(torch::equal(model3.at(name), t)) << name;
}

TEST(ShardedStateDict, MissingOrDamagedRankFilesAreNamed) {
  TempDir dir;
  run_distributed(2, [&] {
    Trainer t({.sharded_state = true});
    t.train(1);
    t.acc.save_state(dir.path() / "ckpt");
  });
  const auto ckpt = dir.path() / "ckpt";
  fs::copy(ckpt, dir.path() / "copy", fs::copy_options::recursive);
  fs::remove(ckpt / "model_fsdp_rank1.safetensors");
  expect_error<std::runtime_error>([&] { merge_weights(ckpt, dir.path() / "merged"); },
                                   {"rank(s) 1", "model_fsdp_rank"});
  run_distributed(2, [&] {
    Trainer t({.sharded_state = true});
    expect_error<std::runtime_error>([&] { t.acc.load_state(ckpt); }, {"model_fsdp_rank1.safetensors"});
  });
  // A slice file whose index does not fit its tensors.
  const auto copy = dir.path() / "copy";
  auto tensors = safetensors::load_file(copy / "model_fsdp_rank0.safetensors");
  auto metadata = safetensors::load_metadata(copy / "model_fsdp_rank0.safetensors");
  auto index = metadata.at("accel_slices");
  const auto at = index.find("\"begin\":0");
  ASSERT_NE(at, std::string::npos);
  index.replace(at, 9, "\"begin\":100000");
  metadata["accel_slices"] = index;
  safetensors::save_file(safetensors::to_named(tensors), copy / "model_fsdp_rank0.safetensors", metadata);
  expect_error<std::runtime_error>([&] { merge_weights(copy, dir.path() / "merged2"); },
                                   {"model_fsdp_rank0.safetensors", "holds elements [100000"});
}

TEST(ShardedStateDict, ModelSlicesLoadIntoAModelThatIsNotSharded) {
  TempDir dir;
  run_distributed(2, [&] {
    Accelerator acc(sharded({.sharded_state = true}));
    seed_cpu(3);
    unit_stack::Stack net;
    auto model = acc.prepare(net);
    acc.save_state(dir.path() / "ckpt");
    acc.save_model(model, dir.path() / "want");
  });
  run_distributed(1, [&] {
    Accelerator acc;  // one process, nothing sharded
    seed_cpu(4);      // other initial weights
    unit_stack::Stack net;
    auto model = acc.prepare(net);
    acc.load_state(dir.path() / "ckpt");
    const auto want = as_map(safetensors::to_named(safetensors::load_file(dir.path() / "want" / "model.safetensors")));
    std::map<std::string, torch::Tensor> got;
    for (const auto& item : net->named_parameters()) got[item.key()] = item.value().detach();
    EXPECT_EQ(max_diff(got, want), 0.0);
  });
}
