// peer: a program built on accel, started with 2 processes by the .venv's
// torchrun and by Accelerate's own `accelerate launch`, sees the topology the
// launcher set up, and its collectives work.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"
#include "accel_test_paths.h"
#include "support/peers.h"

namespace fs = std::filesystem;

namespace {

std::string venv_bin(const std::string& tool) { return (fs::path(ACCEL_PYTHON).parent_path() / tool).string(); }

std::map<std::string, std::string> read_probe(const std::string& path) {
  std::map<std::string, std::string> kv;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

void run_and_check(const std::string& launcher_cmd, const std::string& tag) {
  REQUIRE_PEERS("torch", "accelerate");
  auto dir = fs::temp_directory_path() / ("accel_probe_" + tag);
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string prefix = (dir / "probe").string();
  std::string probe = std::string(ACCEL_BINARY_DIR) + "/tests/accel_probe";
  // The probe must not pick up a GPU or a config from this machine's user.
  std::string cmd = "cd " + dir.string() + " && env ACCEL_PROBE_OUT=" + prefix + " HF_HOME=" + dir.string() +
                    " CUDA_VISIBLE_DEVICES= " + launcher_cmd + " " + probe + " > " + (dir / "log").string() + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream log(dir / "log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  ASSERT_EQ(rc, 0) << cmd << "\n" << text;
  // Rank 0 joins torchrun's agent store instead of failing to host a second one.
  EXPECT_EQ(text.find("failed to bind"), std::string::npos) << text;
  EXPECT_EQ(text.find("failed to listen"), std::string::npos) << text;
  for (int r = 0; r < 2; ++r) {
    auto kv = read_probe(prefix + "." + std::to_string(r));
    EXPECT_EQ(kv["rank"], std::to_string(r)) << text;
    EXPECT_EQ(kv["world_size"], "2");
    EXPECT_EQ(kv["local_rank"], std::to_string(r));
    EXPECT_EQ(kv["local_world_size"], "2");
    EXPECT_EQ(kv["node_rank"], "0");
    EXPECT_EQ(kv["num_nodes"], "1");
    EXPECT_EQ(kv["source"], "torchrun");
    EXPECT_EQ(kv["device"], "cpu");
    EXPECT_EQ(kv["backend"], "gloo");
    EXPECT_EQ(kv["sum"], "3");       // 1 + 2
    EXPECT_EQ(kv["gathered"], "1");  // 0 + 1
    EXPECT_EQ(kv["objects"], "2:rank1");
  }
}

}  // namespace

TEST(LaunchersPeer, TorchrunNoPython) {
  run_and_check(venv_bin("torchrun") + " --nproc_per_node 2 --master_port " + std::to_string(accel::find_free_port()) +
                    " --no-python",
                "torchrun");
}

TEST(LaunchersPeer, AccelerateLaunchNoPython) {
  // Accelerate's --cpu always starts one process; on a machine without a GPU,
  // --multi_gpu --num_processes 2 starts two (through torchrun) that run on
  // the CPU. See docs/launching.md.
  run_and_check(venv_bin("accelerate") + " launch --multi_gpu --num_processes 2 --main_process_port " +
                    std::to_string(accel::find_free_port()) + " --no_python",
                "accelerate");
}
