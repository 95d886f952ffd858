// The pieces of a checkpoint folder: a staged directory replaces the old
// one whole; list_checkpoints finds checkpoint_<n> folders in number order;
// random states restore the generators' sequences.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/checkpoint/project_config.h"
#include "accel/checkpoint/random_state.h"
#include "accel/checkpoint/staged_directory.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"

using namespace accel;
namespace fs = std::filesystem;
using accel::testing::expect_error;
using accel::testing::read_file;
using accel::testing::TempDir;

namespace {

class CheckpointFolder : public ::testing::Test {
 protected:
  void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
  TempDir root_{"checkpoint_folder"};
};

}  // namespace

TEST_F(CheckpointFolder, StagedDirectoryAppearsWholeAndReplacesTheOldOne) {
  const auto target = root_ / "ckpt";
  begin_staging(target);
  const auto staging = staging_directory(target);
  EXPECT_EQ(staging, root_ / ".ckpt.staging");
  write(staging / "a", "first");
  EXPECT_FALSE(fs::exists(target)) << "nothing appears before commit";
  commit_staging(target);
  EXPECT_EQ(read_file(target / "a"), "first");
  EXPECT_FALSE(fs::exists(staging));

  // A second save: the old folder's files do not survive into the new one.
  begin_staging(target);
  write(staging / "b", "second");
  EXPECT_EQ(read_file(target / "a"), "first") << "the old folder stays until commit";
  commit_staging(target);
  EXPECT_FALSE(fs::exists(target / "a"));
  EXPECT_EQ(read_file(target / "b"), "second");
  EXPECT_FALSE(fs::exists(staging));
}

TEST_F(CheckpointFolder, BeginStagingClearsALeftover) {
  const auto target = root_ / "x" / "ckpt/";  // a trailing slash names the same folder
  begin_staging(target);
  write(staging_directory(target) / "half", "from a killed save");
  begin_staging(target);
  EXPECT_TRUE(fs::is_empty(staging_directory(target)));
  EXPECT_EQ(staging_directory(target), root_ / "x" / ".ckpt.staging");
}

TEST_F(CheckpointFolder, CommitRefusesToReplaceAFile) {
  const auto target = root_ / "file";
  write(target, "not a folder");
  begin_staging(target);
  EXPECT_THROW(commit_staging(target), std::runtime_error);
  EXPECT_EQ(read_file(target), "not a folder");
}

TEST_F(CheckpointFolder, ListCheckpointsSortsByNumberAndIgnoresTheRest) {
  EXPECT_TRUE(list_checkpoints(root_ / "absent").empty());
  for (const char* d : {"checkpoint_10", "checkpoint_2", "checkpoint_0", ".checkpoint_3.staging", "checkpoint_x",
                        "checkpoint_", "other"})
    fs::create_directories(root_ / d);
  write(root_ / "checkpoint_7", "a file, not a folder");
  auto all = list_checkpoints(root_);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].first, 0);
  EXPECT_EQ(all[1].first, 2);
  EXPECT_EQ(all[2].first, 10);
  EXPECT_EQ(all[2].second, root_ / "checkpoint_10");
}

TEST(RandomStates, RestoringContinuesTheSameSequence) {
  accel::testing::seed_cpu(42);
  torch::rand({3});
  auto saved = random_states();
  ASSERT_EQ(saved.front().first, "cpu");
  auto expected = torch::rand({5});
  torch::rand({7});  // move on
  safetensors::OrderedTensors dict;
  for (auto& [name, t] : saved) dict.insert(name, t);
  load_random_states(dict, "memory");
  EXPECT_TRUE(torch::equal(torch::rand({5}), expected));
}

TEST(RandomStates, UnknownGeneratorIsRefused) {
  safetensors::OrderedTensors dict;
  dict.insert("cuda:99", torch::zeros({16}, torch::kUInt8));
  expect_error<std::runtime_error>([&] { load_random_states(dict, "f"); }, {"'cuda:99' names no generator"});
}
