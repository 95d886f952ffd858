// peer: a program built on accel, started with 2 processes by the .venv's
// torchrun and by Accelerate's own `accelerate launch`, sees the topology the
// launcher set up, and its collectives work.
#include <string>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"
#include "support/peers.h"
#include "support/probe.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::expect_probe_ranks;
using accel::testing::probe_program;
using accel::testing::run_shell;
using accel::testing::TempDir;
using accel::testing::venv_program;

void run_and_check(const std::string& launcher_cmd) {
  REQUIRE_PEERS("torch", "accelerate");
  const TempDir dir("launchers");
  const std::string prefix = (dir / "probe").string();
  // The probe must not pick up a GPU or a config from this machine's user.
  const std::string cmd = "cd " + dir.path().string() + " && env ACCEL_PROBE_OUT=" + prefix +
                          " HF_HOME=" + dir.path().string() + " CUDA_VISIBLE_DEVICES= " + launcher_cmd + " " +
                          probe_program();
  const auto run = run_shell(cmd, dir / "log");
  const std::string& text = run.output;
  ASSERT_EQ(run.status, 0) << cmd << "\n" << text;
  // Rank 0 joins torchrun's agent store instead of failing to host a second one.
  EXPECT_EQ(text.find("failed to bind"), std::string::npos) << text;
  EXPECT_EQ(text.find("failed to listen"), std::string::npos) << text;
  expect_probe_ranks(prefix, "torchrun", text);
}

}  // namespace

TEST(LaunchersPeer, TorchrunNoPython) {
  run_and_check(venv_program("torchrun") + " --nproc_per_node 2 --master_port " +
                std::to_string(accel::find_free_port()) + " --no-python");
}

TEST(LaunchersPeer, AccelerateLaunchNoPython) {
  // Accelerate's --cpu always starts one process; on a machine without a GPU,
  // --multi_gpu --num_processes 2 starts two (through torchrun) that run on
  // the CPU. See docs/launching.md.
  run_and_check(venv_program("accelerate") + " launch --multi_gpu --num_processes 2 --main_process_port " +
                std::to_string(accel::find_free_port()) + " --no_python");
}
