// `accel launch` and `accel test` end to end: the real binary starting
// real processes on loopback.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "accel/dist/launcher.h"
#include "support/files.h"
#include "support/probe.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::testing::binary_path;
using accel::testing::EnvChange;
using accel::testing::finish_program;
using accel::testing::Outcome;
using accel::testing::read_file;
using accel::testing::read_key_values;
using accel::testing::start_program;
using accel::testing::TempDir;
using accel::testing::test_program;
using accel::testing::wait_for_files;
using Clock = std::chrono::steady_clock;

class CliLaunch : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(dir_ / "hf"); }

  // Starts `accel ARGS...` with its output in launcher<index>.log; returns the pid.
  pid_t start(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, int index = 0) {
    std::vector<std::string> argv = {binary_path("accel")};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<EnvChange> changes = {{"HF_HOME", (dir_ / "hf").string()},  // no user config
                                      {"ACCEL_TEST_OUT", dir_.path().string()}};
    changes.insert(changes.end(), env.begin(), env.end());
    return start_program(argv, log(index), {.env = changes});
  }
  Outcome finish(pid_t pid, Clock::time_point t0, int index = 0) { return finish_program(pid, t0, log(index)); }
  Outcome accel(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {}) {
    auto t0 = Clock::now();
    return finish(start(args, env), t0);
  }
  fs::path log(int index) const { return dir_ / ("launcher" + std::to_string(index) + ".log"); }
  // What dump_env.sh wrote for `rank`.
  std::map<std::string, std::string> env_of(const std::string& rank) { return read_key_values(dir_ / ("env." + rank)); }
  // Whether <prefix>0 .. <prefix>n-1 appear within `seconds`.
  bool files_appear(int n, const std::string& prefix, double seconds = 20) {
    std::vector<fs::path> files;
    for (int r = 0; r < n; ++r) files.push_back(dir_ / (prefix + std::to_string(r)));
    return wait_for_files(files, std::chrono::duration<double>(seconds));
  }
  void expect_all_gone(int n) {
    for (int r = 0; r < n; ++r) {
      std::ifstream f(dir_ / ("pid." + std::to_string(r)));
      pid_t pid = 0;
      if (!(f >> pid)) continue;  // never started
      EXPECT_NE(kill(pid, 0), 0) << "rank " << r << " (pid " << pid << ") is still running";
    }
  }
  TempDir dir_{"cli_launch"};
};

TEST_F(CliLaunch, WorkersSeeTheEnvironment) {
  auto r = accel({"launch", "--cpu", "--num-processes", "2", "--main_process_port", "0", "--mixed_precision", "bf16",
                  test_program("dump_env.sh"), "ignored-arg"},
                 {{"OMP_NUM_THREADS", "1"}});
  ASSERT_EQ(r.status, 0) << r.output;
  for (int rank = 0; rank < 2; ++rank) {
    auto e = env_of(std::to_string(rank));
    EXPECT_EQ(e["RANK"], std::to_string(rank));
    EXPECT_EQ(e["LOCAL_RANK"], std::to_string(rank));
    EXPECT_EQ(e["WORLD_SIZE"], "2");
    EXPECT_EQ(e["LOCAL_WORLD_SIZE"], "2");
    EXPECT_EQ(e["GROUP_RANK"], "0");
    EXPECT_EQ(e["ROLE_RANK"], std::to_string(rank));
    EXPECT_EQ(e["MASTER_ADDR"], "127.0.0.1");
    EXPECT_EQ(e["ACCELERATE_USE_CPU"], "True");
    EXPECT_EQ(e["ACCELERATE_MIXED_PRECISION"], "bf16");
    EXPECT_EQ(e["OMP_NUM_THREADS"], "1");
    EXPECT_EQ(e["HF_HOME"], (dir_ / "hf").string());  // the launcher's own environment is passed on
  }
  EXPECT_EQ(env_of("0")["MASTER_PORT"], env_of("1")["MASTER_PORT"]);
  EXPECT_NE(r.output.find("had defaults used instead"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("hello from 1"), std::string::npos);
}

TEST_F(CliLaunch, GradientAccumulationStepsReachEveryWorker) {
  // Beyond Accelerate (DeepSpeed only there): the simple launcher passes it on too.
  auto r = accel({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0",
                  "--gradient_accumulation_steps", "4", test_program("dump_env.sh")},
                 {{"OMP_NUM_THREADS", "1"}});
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* rank : {"0", "1"}) EXPECT_EQ(env_of(rank)["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"], "4");
}

TEST_F(CliLaunch, UnknownCommandIsNamedWithTheKnownOnes) {
  auto r = accel({"lanch", "--cpu", "prog"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("unknown command 'lanch'"), std::string::npos) << r.output;
  for (const char* known : {"launch", "config", "env", "test", "merge-weights"})
    EXPECT_NE(r.output.find(known), std::string::npos) << known << "\n" << r.output;
}

TEST_F(CliLaunch, PrefixedOutputAndLogFiles) {
  auto r = accel({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", "--tee", "3", "--log_dir",
                  (dir_ / "logs").string(), test_program("dump_env.sh")});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("[rank0]:hello from 0\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[rank1]:warning from 1\n"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(dir_ / "logs" / "attempt_0" / "1" / "stdout.log"), "hello from 1\n");
  EXPECT_EQ(read_file(dir_ / "logs" / "attempt_0" / "0" / "stderr.log"), "warning from 0\n");
}

// A rank that reaches the rendezvous late: the launcher says how many have
// arrived and which one it waits for, then that all have; not with the
// environment variable that turns progress bars off.
TEST_F(CliLaunch, ReportsRanksArrivingAtTheRendezvous) {
  const std::vector<std::string> args = {"launch",
                                         "--cpu",
                                         "--num_processes",
                                         "2",
                                         "--main_process_port",
                                         "0",
                                         test_program("late_start.sh"),
                                         accel::testing::probe_program()};
  const std::map<std::string, std::string> env = {{"LATE_RANK", "1"},
                                                  {"LATE_SECONDS", "8"},
                                                  {"OMP_NUM_THREADS", "1"},
                                                  // rank 0's store stays up after all arrived
                                                  {"ACCEL_PROBE_LINGER_MS", "2000"},
                                                  {"ACCEL_PROBE_OUT", (dir_ / "probe").string()}};
  auto r = accel(args, env);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_key_values(dir_ / "probe.1")["sum"], "3");  // the job itself ran
  // Not a terminal (a log file): plain lines, no redraws.
  EXPECT_EQ(r.output.find('\r'), std::string::npos) << r.output;
  const auto waiting = r.output.find("accel launch: rendezvous at 127.0.0.1:");
  ASSERT_NE(waiting, std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" 1/2 ranks arrived after ", waiting), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(waiting for rank 1)\n", waiting), std::string::npos) << r.output;
  const auto all = r.output.find(" 2/2 ranks arrived after ", waiting);
  ASSERT_NE(all, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("waiting for", all), std::string::npos) << "a line after all arrived:\n" << r.output;

  auto env_off = env;
  env_off["ACCEL_DISABLE_PROGRESS_BARS"] = "1";
  auto quiet = accel(args, env_off);
  ASSERT_EQ(quiet.status, 0) << quiet.output;
  EXPECT_EQ(quiet.output.find("rendezvous at"), std::string::npos) << quiet.output;
}

TEST_F(CliLaunch, AFailingWorkerStopsTheOthers) {
  auto r = accel({"launch", "--cpu", "--num_processes", "3", "--main_process_port", "0", test_program("misbehave.sh")},
                 {{"FAIL_RANK", "1"}, {"FAIL_STATUS", "7"}});
  EXPECT_EQ(r.status, 7) << r.output;
  EXPECT_NE(r.output.find("rank 1 exited with status 7"), std::string::npos) << r.output;
  EXPECT_LT(r.seconds, 10);
  expect_all_gone(3);
}

TEST_F(CliLaunch, AWorkerKilledByASignal) {
  auto r = accel({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", test_program("misbehave.sh")},
                 {{"FAIL_RANK", "0"}, {"FAIL_SIGNAL", "SEGV"}});
  EXPECT_EQ(r.status, 128 + SIGSEGV) << r.output;
  EXPECT_NE(r.output.find("rank 0 was killed by signal 11"), std::string::npos) << r.output;
  expect_all_gone(2);
}

TEST_F(CliLaunch, WorkersIgnoringSigtermAreKilledAfterTheGracePeriod) {
  auto r = accel({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", "--grace_period", "0.5",
                  test_program("misbehave.sh")},
                 {{"FAIL_RANK", "1"}, {"IGNORE_TERM", "1"}});
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_LT(r.seconds, 10);
  expect_all_gone(2);
}

TEST_F(CliLaunch, SigintToTheLauncherStopsEveryWorker) {
  auto t0 = Clock::now();
  pid_t launcher =
      start({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", test_program("misbehave.sh")}, {});
  ASSERT_TRUE(files_appear(2, "pid."));
  kill(launcher, SIGINT);
  auto r = finish(launcher, t0);
  EXPECT_EQ(r.status, 128 + SIGINT) << r.output;
  EXPECT_NE(r.output.find("stopped"), std::string::npos) << r.output;
  expect_all_gone(2);
}

TEST_F(CliLaunch, MaxRestartsRestartsTheGroup) {
  auto r = accel({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", "--max_restarts", "2",
                  test_program("misbehave.sh")},
                 {{"FAIL_RANK", "0"}, {"FAIL_AFTER", "0"}});
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_EQ(read_file(dir_ / "attempts.0"), "0\n1\n2\n");
  EXPECT_NE(r.output.find("giving up after 2 restart(s)"), std::string::npos) << r.output;
}

TEST_F(CliLaunch, ProgramThatCannotRun) {
  auto r = accel({"launch", "--cpu", "/nonexistent/program"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("cannot execute '/nonexistent/program'"), std::string::npos) << r.output;
  auto bad = accel({"launch", "--num_processes", "two", "x"});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("--num_processes: expected an integer, got 'two'"), std::string::npos) << bad.output;
}

TEST_F(CliLaunch, TwoMachinesOnLoopback) {
  const std::string port = std::to_string(accel::find_free_port());
  auto t0 = Clock::now();
  std::vector<pid_t> launchers;
  for (int m = 0; m < 2; ++m)
    launchers.push_back(
        start({"launch", "--cpu", "--num_processes", "4", "--num_machines", "2", "--machine_rank", std::to_string(m),
               "--main_process_ip", "127.0.0.1", "--main_process_port", port, binary_path("accel"), "__test-worker"},
              {}, m));
  // The workers are `accel __test-worker`: the self-check over 4 ranks on 2 "machines".
  for (int m = 0; m < 2; ++m) {
    auto r = finish(launchers[m], t0, m);
    EXPECT_EQ(r.status, 0) << "machine " << m << ":\n" << r.output;
    if (m == 0) {
      EXPECT_NE(r.output.find("on 4 process(es), 2 machine(s)"), std::string::npos) << r.output;
      EXPECT_NE(r.output.find("Test is a success!"), std::string::npos) << r.output;
    }
  }
}

TEST_F(CliLaunch, AccelTestWithTwoCpuProcesses) {
  const std::string cfg = (dir_ / "cpu2.yaml").string();
  std::ofstream(cfg) << "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_processes: 2\n"
                        "use_cpu: true\nmain_process_port: 0\nmixed_precision: 'no'\n";
  auto r = accel({"test", "--config_file", cfg});
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* check : {"process ordering", "broadcast and gather", "random state", "data sharding",
                            "training equals the single-process result", "Test is a success!"})
    EXPECT_NE(r.output.find(check), std::string::npos) << check << "\n" << r.output;
  EXPECT_NE(r.output.find("on 2 process(es)"), std::string::npos) << r.output;
}

TEST_F(CliLaunch, ConfigDefaultAndUpdate) {
  const std::string cfg = (dir_ / "d" / "c.yaml").string();
  auto r = accel({"config", "default", "--config_file", cfg, "--mixed_precision", "bf16"});
  ASSERT_EQ(r.status, 0) << r.output;
  auto text = read_file(cfg);
  EXPECT_NE(text.find("mixed_precision: bf16\n"), std::string::npos) << text;
  // Without a GPU the default config trains on the CPU; with one, on it;
  // with several, on all of them.
  const bool gpu = torch::cuda::is_available();
  const char* type = torch::cuda::device_count() > 1 ? "distributed_type: MULTI_GPU\n" : "distributed_type: 'NO'\n";
  EXPECT_NE(text.find(type), std::string::npos) << text;
  EXPECT_NE(text.find(gpu ? "use_cpu: false\n" : "use_cpu: true\n"), std::string::npos) << text;
  auto again = accel({"config", "default", "--config_file", cfg});
  EXPECT_NE(again.output.find("already exists"), std::string::npos);
  std::ofstream(cfg) << "distributed_type: MULTI_CPU\nnum_processes: 2\n";
  ASSERT_EQ(accel({"config", "update", "--config_file", cfg}).status, 0);
  EXPECT_NE(read_file(cfg).find("rdzv_backend: static\n"), std::string::npos) << read_file(cfg);
  EXPECT_NE(read_file(cfg).find("num_processes: 2\n"), std::string::npos);
}

TEST_F(CliLaunch, EnvReportsVersionsAndTheDefaultConfig) {
  auto none = accel({"env"});
  ASSERT_EQ(none.status, 0) << none.output;
  EXPECT_NE(none.output.find("- LibTorch version: 2.11"), std::string::npos) << none.output;
  EXPECT_NE(none.output.find("- System RAM: "), std::string::npos) << none.output;
  EXPECT_NE(none.output.find("default_config.yaml): Not found"), std::string::npos) << none.output;
  fs::create_directories(dir_ / "hf" / "accelerate");
  std::ofstream(dir_ / "hf" / "accelerate" / "default_config.yaml")
      << "distributed_type: MULTI_CPU\nnum_processes: 3\n";
  auto with = accel({"env"});
  EXPECT_NE(with.output.find("\t- num_processes: 3\n"), std::string::npos) << with.output;
  EXPECT_NE(with.output.find("\t- distributed_type: MULTI_CPU\n"), std::string::npos) << with.output;
}

TEST_F(CliLaunch, ConfigFromFlagsAsksNothing) {
  const std::string cfg = (dir_ / "flags.yaml").string();
  auto r = accel({"config", "--defaults", "--config_file", cfg, "--machine_type", "multi-CPU", "--num-processes", "4",
                  "--mixed_precision", "bf16", "--zero_stage", "2"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.find("Which type of machine"), std::string::npos) << r.output;  // nothing asked
  // A flag whose question the other answers leave unasked is said, not dropped silently.
  EXPECT_NE(r.output.find("--zero_stage was not used"), std::string::npos) << r.output;
  auto text = read_file(cfg);
  EXPECT_NE(text.find("distributed_type: MULTI_CPU\n"), std::string::npos) << text;
  EXPECT_NE(text.find("num_processes: 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mixed_precision: bf16\n"), std::string::npos) << text;
  EXPECT_NE(text.find("use_cpu: true\n"), std::string::npos) << text;

  auto bad =
      accel({"config", "--defaults", "--config_file", cfg, "--machine_type", "multi-CPU", "--num_processes", "four"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.output.find("--num_processes 'four': expected an integer"), std::string::npos) << bad.output;
}

TEST_F(CliLaunch, ConfigDefaultCoversCpuProcessesAndPrecision) {
  const std::string cfg = (dir_ / "default.yaml").string();
  auto r =
      accel({"config", "default", "--config_file", cfg, "--cpu", "--num_processes", "2", "--mixed_precision", "bf16"});
  ASSERT_EQ(r.status, 0) << r.output;
  auto text = read_file(cfg);
  EXPECT_NE(text.find("distributed_type: MULTI_CPU\n"), std::string::npos) << text;
  EXPECT_NE(text.find("num_processes: 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mixed_precision: bf16\n"), std::string::npos) << text;
  EXPECT_NE(text.find("use_cpu: true\n"), std::string::npos) << text;
}

TEST_F(CliLaunch, ConfigQuestionnaireFromPipedAnswers) {
  const std::string cfg = (dir_ / "q.yaml").string();
  std::ofstream(dir_ / "answers") << "multi-CPU\n1\nno\n4\nbf16\n" << cfg << "\n";
  auto t0 = Clock::now();
  const pid_t pid = start_program({binary_path("accel"), "config"}, log(0), {.input = dir_ / "answers"});
  auto r = finish(pid, t0);
  ASSERT_EQ(r.status, 0) << r.output;
  auto text = read_file(cfg);
  EXPECT_NE(text.find("distributed_type: MULTI_CPU\n"), std::string::npos) << text;
  EXPECT_NE(text.find("num_processes: 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mixed_precision: bf16\n"), std::string::npos) << text;
  EXPECT_NE(text.find("use_cpu: true\n"), std::string::npos) << text;
}

}  // namespace
