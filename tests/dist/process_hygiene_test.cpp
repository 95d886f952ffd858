// Issue 20, processes: `accel launch` ends a worker together with the
// processes it started (each worker leads its own process group, which the
// launcher signals, as torchrun does), whether the launcher is stopped or
// another rank fails; and a launcher stopped while it is still starting
// workers starts no more of them.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "accel/dist/worker_group.h"
#include "accel/launch/launch_plan.h"
#include "accel/launch/run.h"
#include "accel_test_paths.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class ProcessHygiene : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("accel_hygiene_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "hf");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Starts `program ARGS...` with `env` and its output in dir_/out.log.
  pid_t start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
    const std::string out = (dir_ / "out.log").string();
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      setenv("HF_HOME", (dir_ / "hf").c_str(), 1);
      setenv("ACCEL_TEST_OUT", dir_.c_str(), 1);
      for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<std::string> args = argv;
      std::vector<char*> a;
      for (auto& s : args) a.push_back(s.data());
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    return pid;
  }
  int finish(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  std::string output() {
    std::ifstream f(dir_ / "out.log");
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  pid_t read_pid(const std::string& name) {
    std::ifstream f(dir_ / name);
    pid_t pid = 0;
    f >> pid;
    return pid;
  }
  bool wait_for(const std::vector<std::string>& names, double seconds = 30) {
    for (auto until = Clock::now() + std::chrono::duration<double>(seconds); Clock::now() < until;) {
      bool all = true;
      for (const auto& n : names) all = all && fs::exists(dir_ / n);
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
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
    std::vector<std::string> argv = {std::string(ACCEL_BINARY_DIR) + "/accel",
                                     "launch",
                                     "--cpu",
                                     "--num_processes",
                                     "2",
                                     "--main_process_port",
                                     "0",
                                     "--grace_period",
                                     "2"};
    argv.insert(argv.end(), more.begin(), more.end());
    return argv;
  }
  std::string program(const std::string& name) { return std::string(ACCEL_SOURCE_DIR) + "/tests/programs/" + name; }
  fs::path dir_;
};

TEST_F(ProcessHygiene, StoppingTheLauncherEndsTheWorkersChildren) {
  const pid_t launcher = start(launch({program("background_child.sh")}), {});
  ASSERT_TRUE(wait_for({"child.0", "child.1", "pid.0", "pid.1"})) << output();
  const pid_t children[2] = {read_pid("child.0"), read_pid("child.1")};
  kill(launcher, SIGTERM);
  EXPECT_EQ(finish(launcher), 128 + SIGTERM) << output();
  for (pid_t child : children) {
    EXPECT_TRUE(gone(child)) << "the worker's child " << child << " outlived the job";
    if (!gone(child, 0)) kill(child, SIGKILL);
  }
}

TEST_F(ProcessHygiene, AFailingRankEndsTheOtherWorkersChildren) {
  const pid_t launcher = start(launch({program("background_child.sh")}), {{"FAIL_RANK", "1"}});
  EXPECT_EQ(finish(launcher), 3) << output();
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
  setenv("HF_HOME", (dir_ / "hf").c_str(), 1);
  accel::launch::LaunchArgs a = accel::launch::LaunchArgs::defaults();
  a.set_flag("cpu", "");
  a.set_flag("num_processes", "8");
  a.set_flag("main_process_port", "0");
  a.program = program("background_child.sh");
  accel::launch::HostInfo host;
  host.gpus = 0;
  host.physical_cores = 8;
  const auto plan = accel::launch::plan_launch(a, accel::process_env(), host);
  setenv("ACCEL_TEST_OUT", dir_.c_str(), 1);
  accel::WorkerGroup::request_stop(SIGTERM);
  std::ostringstream log;
  const auto t0 = Clock::now();
  EXPECT_EQ(accel::launch::run_launch(plan, log), 128 + SIGTERM) << log.str();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int r = 0; r < 8; ++r) EXPECT_FALSE(fs::exists(dir_ / ("pid." + std::to_string(r)))) << "rank " << r;
}

}  // namespace
