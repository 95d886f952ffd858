// Issue 20, processes: `accel launch` ends a worker together with the
// processes it started (each worker leads its own process group, which the
// launcher signals, as torchrun does), whether the launcher is stopped or
// another rank fails; and a launcher stopped while it is still starting
// workers starts no more of them.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "accel/dist/worker_group.h"
#include "accel/launch/launch_plan.h"
#include "accel/launch/run.h"
#include "support/environment.h"
#include "support/files.h"
#include "support/launch.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::testing::binary_path;
using accel::testing::EnvChange;
using accel::testing::plan_for;
using accel::testing::read_file;
using accel::testing::ScopedEnv;
using accel::testing::start_program;
using accel::testing::TempDir;
using accel::testing::test_program;
using accel::testing::wait_for_exit;
using accel::testing::wait_for_files;
using Clock = std::chrono::steady_clock;

class ProcessHygiene : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(dir_ / "hf"); }

  // Starts `program ARGS...` with `env` and its output in dir_/out.log.
  pid_t start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
    std::vector<EnvChange> changes = {{"HF_HOME", (dir_ / "hf").string()}, {"ACCEL_TEST_OUT", dir_.path().string()}};
    changes.insert(changes.end(), env.begin(), env.end());
    return start_program(argv, dir_ / "out.log", {.env = changes});
  }
  std::string output() { return read_file(dir_ / "out.log"); }
  pid_t read_pid(const std::string& name) {
    std::ifstream f(dir_ / name);
    pid_t pid = 0;
    f >> pid;
    return pid;
  }
  bool wait_for(const std::vector<std::string>& names, double seconds = 30) {
    std::vector<fs::path> files;
    for (const auto& n : names) files.push_back(dir_ / n);
    return wait_for_files(files, std::chrono::duration<double>(seconds));
  }
  // A process is gone when it no longer exists or is a zombie of init's.
  static bool gone(pid_t pid, double seconds = 5) {
    for (auto until = Clock::now() + std::chrono::duration<double>(seconds); Clock::now() < until;) {
      if (kill(pid, 0) != 0) return true;
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string s;
      std::getline(stat, s);
      const auto close = s.rfind(')');
      if (close != std::string::npos && s.size() > close + 2 && s[close + 2] == 'Z') return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  std::vector<std::string> launch(const std::vector<std::string>& more) {
    std::vector<std::string> argv = {
        binary_path("accel"), "launch", "--cpu", "--num_processes", "2", "--main_process_port", "0",
        "--grace_period",     "2"};
    argv.insert(argv.end(), more.begin(), more.end());
    return argv;
  }
  TempDir dir_{"hygiene"};
};

TEST_F(ProcessHygiene, StoppingTheLauncherEndsTheWorkersChildren) {
  const pid_t launcher = start(launch({test_program("background_child.sh")}), {});
  ASSERT_TRUE(wait_for({"child.0", "child.1", "pid.0", "pid.1"})) << output();
  const pid_t children[2] = {read_pid("child.0"), read_pid("child.1")};
  kill(launcher, SIGTERM);
  EXPECT_EQ(wait_for_exit(launcher), 128 + SIGTERM) << output();
  for (pid_t child : children) {
    EXPECT_TRUE(gone(child)) << "the worker's child " << child << " outlived the job";
    if (!gone(child, 0)) kill(child, SIGKILL);
  }
}

TEST_F(ProcessHygiene, AFailingRankEndsTheOtherWorkersChildren) {
  const pid_t launcher = start(launch({test_program("background_child.sh")}), {{"FAIL_RANK", "1"}});
  EXPECT_EQ(wait_for_exit(launcher), 3) << output();
  for (const char* name : {"child.0", "child.1"}) {
    const pid_t child = read_pid(name);
    ASSERT_GT(child, 0) << name;
    EXPECT_TRUE(gone(child)) << name << " (" << child << ") outlived the job";
    if (!gone(child, 0)) kill(child, SIGKILL);
  }
}

TEST_F(ProcessHygiene, AStopWhileStartingStartsNoMoreWorkers) {
  // The stop arrives before the first spawn: nothing starts, and the launch
  // reports the stop (not success).
  ScopedEnv env("HF_HOME", (dir_ / "hf").string());
  const auto plan = plan_for({{"cpu", ""}, {"num_processes", "8"}, {"main_process_port", "0"}}, accel::process_env(),
                             /*gpus=*/0, /*cores=*/8, test_program("background_child.sh"));
  env.set("ACCEL_TEST_OUT", dir_.path().string());
  accel::WorkerGroup::request_stop(SIGTERM);
  std::ostringstream log;
  const auto t0 = Clock::now();
  EXPECT_EQ(accel::launch::run_launch(plan, log), 128 + SIGTERM) << log.str();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int r = 0; r < 8; ++r) EXPECT_FALSE(fs::exists(dir_ / ("pid." + std::to_string(r)))) << "rank " << r;
}

}  // namespace
