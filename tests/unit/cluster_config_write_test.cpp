// Issue 20, files: `accel config` (default, update, the questionnaire) saves
// through ClusterConfig::save, which writes a temporary made with O_EXCL
// under an unpredictable name and renames it over the target. A symlink a
// local user plants at the target's name, or at the temporary name the
// old writer used (<path>.tmp.<pid>), is never written through.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "accel/launch/cluster_config.h"
#include "support/files.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::launch::ClusterConfig;
using accel::testing::read_file;
using accel::testing::TempDir;

class ClusterConfigWrite : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_ / "victim") << "precious\n";
    config_ = ClusterConfig::parse("distributed_type: NO\nnum_processes: 1\n", "test");
  }
  TempDir dir_{"config_write"};
  ClusterConfig config_;
};

TEST_F(ClusterConfigWrite, ALinkAtTheTargetIsReplacedNotFollowed) {
  const auto target = dir_ / "default_config.yaml";
  fs::create_symlink(dir_ / "victim", target);
  config_.save(target.string());
  EXPECT_EQ(read_file(dir_ / "victim"), "precious\n");
  EXPECT_FALSE(fs::is_symlink(target));
  EXPECT_EQ(ClusterConfig::load(target.string()).get("distributed_type").str(), "NO");
  // A dangling link too (`accel config default` checks exists(), which is false for it).
  fs::remove(target);
  fs::create_symlink(dir_ / "not_there", target);
  config_.save(target.string());
  EXPECT_FALSE(fs::exists(dir_ / "not_there"));
  EXPECT_FALSE(fs::is_symlink(target));
}

TEST_F(ClusterConfigWrite, LinksAtPredictableTemporaryNamesAreNotWrittenThrough) {
  const auto target = dir_ / "default_config.yaml";
  // The names a predictable writer would pick: <target>.tmp.<pid> (the old
  // one) and .<name>.tmp-<pid>-<n> (AtomicFile's, before it added random bits).
  fs::create_symlink(dir_ / "victim", target.string() + ".tmp." + std::to_string(getpid()));
  for (int n = 0; n < 64; ++n)
    fs::create_symlink(dir_ / "victim",
                       dir_ / (".default_config.yaml.tmp-" + std::to_string(getpid()) + "-" + std::to_string(n)));
  config_.save(target.string());
  EXPECT_EQ(read_file(dir_ / "victim"), "precious\n");
  EXPECT_EQ(ClusterConfig::load(target.string()).get("num_processes").integer, 1);
}

TEST_F(ClusterConfigWrite, NoTemporaryIsLeftBehind) {
  const auto target = dir_ / "sub" / "default_config.yaml";
  config_.save(target.string());
  config_.save(target.string());
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(target.parent_path())) files += e.path() == target ? 0 : 1;
  EXPECT_EQ(files, 0u);
  EXPECT_NE(read_file(target).find("distributed_type: 'NO'"), std::string::npos) << read_file(target);
}

TEST_F(ClusterConfigWrite, WhatIsWrittenReadsBackTheSame) {
  // Found by fuzz/yaml_config: control characters in a value, and a list
  // item that is an empty string, did not survive `accel config update`.
  auto c = ClusterConfig::parse(
      "distributed_type: NO\nmain_process_ip: \"a\\x00b\\tc\\nd\\\\e\\\"f\"\ntpu_env: [x, '', !, 1.5, ~]\n", "test");
  EXPECT_EQ(c.get("main_process_ip").str(), std::string("a\0b\tc\nd\\e\"f", 11));
  const std::string written = c.to_yaml();
  const auto again = ClusterConfig::parse(written, "written");
  EXPECT_EQ(again.to_yaml(), written);
  EXPECT_EQ(again.get("main_process_ip").str(), c.get("main_process_ip").str());
  EXPECT_EQ(again.get("tpu_env").items, c.get("tpu_env").items);
}

}  // namespace
