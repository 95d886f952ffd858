// `accel launch` and `accel test` end to end: the real binary starting
// real processes on loopback.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "accel/dist/launcher.h"
#include "accel_test_paths.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Outcome {
  int status = -1;  // exit status, or 128 + signal
  std::string output;
  double seconds = 0;
};

class CliLaunch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("accel_cli_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "hf");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string program(const std::string& name) { return std::string(ACCEL_SOURCE_DIR) + "/tests/programs/" + name; }

  // Starts `accel ARGS...` with its output in a file; returns the pid.
  pid_t start(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, int index = 0) {
    std::vector<std::string> argv = {std::string(ACCEL_BINARY_DIR) + "/accel"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string out = (dir_ / ("launcher" + std::to_string(index) + ".log")).string();
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      setenv("HF_HOME", (dir_ / "hf").c_str(), 1);  // no user config
      setenv("ACCEL_TEST_OUT", dir_.c_str(), 1);
      for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    return pid;
  }
  Outcome finish(pid_t pid, Clock::time_point t0, int index = 0) {
    Outcome r;
    int st = 0;
    waitpid(pid, &st, 0);
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.output = read(dir_ / ("launcher" + std::to_string(index) + ".log"));
    return r;
  }
  Outcome accel(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {}) {
    auto t0 = Clock::now();
    return finish(start(args, env), t0);
  }
  static std::string read(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  std::map<std::string, std::string> env_of(const std::string& rank) {
    std::map<std::string, std::string> m;
    std::ifstream f(dir_ / ("env." + rank));
    std::string line;
    while (std::getline(f, line)) {
      auto eq = line.find('=');
      if (eq != std::string::npos) m[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return m;
  }
  bool wait_for_files(int n, const std::string& prefix, double seconds = 20) {
    auto until = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < until) {
      int found = 0;
      for (int r = 0; r < n; ++r) found += fs::exists(dir_ / (prefix + std::to_string(r)));
      if (found == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  void expect_all_gone(int n) {
    for (int r = 0; r < n; ++r) {
      std::ifstream f(dir_ / ("pid." + std::to_string(r)));
      pid_t pid = 0;
      if (!(f >> pid)) continue;  // never started
      EXPECT_NE(kill(pid, 0), 0) << "rank " << r << " (pid " << pid << ") is still running";
    }
  }
  fs::path dir_;
};

TEST_F(CliLaunch, WorkersSeeTheEnvironment) {
  auto r = accel({"launch", "--cpu", "--num-processes", "2", "--main_process_port", "0", "--mixed_precision", "bf16",
                  program("dump_env.sh"), "ignored-arg"},
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
                  "--gradient_accumulation_steps", "4", program("dump_env.sh")},
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
                  (dir_ / "logs").string(), program("dump_env.sh")});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("[rank0]:hello from 0\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[rank1]:warning from 1\n"), std::string::npos) << r.output;
  EXPECT_EQ(read(dir_ / "logs" / "attempt_0" / "1" / "stdout.log"), "hello from 1\n");
  EXPECT_EQ(read(dir_ / "logs" / "attempt_0" / "0" / "stderr.log"), "warning from 0\n");
}

TEST_F(CliLaunch, AFailingWorkerStopsTheOthers) {
  auto r = accel({"launch", "--cpu", "--num_processes", "3", "--main_process_port", "0", program("misbehave.sh")},
                 {{"FAIL_RANK", "1"}, {"FAIL_STATUS", "7"}});
  EXPECT_EQ(r.status, 7) << r.output;
  EXPECT_NE(r.output.find("rank 1 exited with status 7"), std::string::npos) << r.output;
  EXPECT_LT(r.seconds, 10);
  expect_all_gone(3);
}

TEST_F(CliLaunch, AWorkerKilledByASignal) {
  auto r = accel({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", program("misbehave.sh")},
                 {{"FAIL_RANK", "0"}, {"FAIL_SIGNAL", "SEGV"}});
  EXPECT_EQ(r.status, 128 + SIGSEGV) << r.output;
  EXPECT_NE(r.output.find("rank 0 was killed by signal 11"), std::string::npos) << r.output;
  expect_all_gone(2);
}

TEST_F(CliLaunch, WorkersIgnoringSigtermAreKilledAfterTheGracePeriod) {
  auto r = accel({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", "--grace_period", "0.5",
                  program("misbehave.sh")},
                 {{"FAIL_RANK", "1"}, {"IGNORE_TERM", "1"}});
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_LT(r.seconds, 10);
  expect_all_gone(2);
}

TEST_F(CliLaunch, SigintToTheLauncherStopsEveryWorker) {
  auto t0 = Clock::now();
  pid_t launcher =
      start({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", program("misbehave.sh")}, {});
  ASSERT_TRUE(wait_for_files(2, "pid."));
  kill(launcher, SIGINT);
  auto r = finish(launcher, t0);
  EXPECT_EQ(r.status, 128 + SIGINT) << r.output;
  EXPECT_NE(r.output.find("stopped"), std::string::npos) << r.output;
  expect_all_gone(2);
}

TEST_F(CliLaunch, MaxRestartsRestartsTheGroup) {
  auto r = accel({"launch", "--cpu", "--num_processes", "2", "--main_process_port", "0", "--max_restarts", "2",
                  program("misbehave.sh")},
                 {{"FAIL_RANK", "0"}, {"FAIL_AFTER", "0"}});
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_EQ(read(dir_ / "attempts.0"), "0\n1\n2\n");
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
    launchers.push_back(start({"launch", "--cpu", "--num_processes", "4", "--num_machines", "2", "--machine_rank",
                               std::to_string(m), "--main_process_ip", "127.0.0.1", "--main_process_port", port,
                               std::string(ACCEL_BINARY_DIR) + "/accel", "__test-worker"},
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
  auto text = read(cfg);
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
  EXPECT_NE(read(cfg).find("rdzv_backend: static\n"), std::string::npos) << read(cfg);
  EXPECT_NE(read(cfg).find("num_processes: 2\n"), std::string::npos);
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
  auto text = read(cfg);
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
  auto text = read(cfg);
  EXPECT_NE(text.find("distributed_type: MULTI_CPU\n"), std::string::npos) << text;
  EXPECT_NE(text.find("num_processes: 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mixed_precision: bf16\n"), std::string::npos) << text;
  EXPECT_NE(text.find("use_cpu: true\n"), std::string::npos) << text;
}

TEST_F(CliLaunch, ConfigQuestionnaireFromPipedAnswers) {
  const std::string cfg = (dir_ / "q.yaml").string();
  std::ofstream(dir_ / "answers") << "multi-CPU\n1\nno\n4\nbf16\n" << cfg << "\n";
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int in = open((dir_ / "answers").c_str(), O_RDONLY);
    dup2(in, 0);
    int out = open((dir_ / "launcher0.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(out, 2);
    execl((std::string(ACCEL_BINARY_DIR) + "/accel").c_str(), "accel", "config", nullptr);
    _exit(127);
  }
  auto r = finish(pid, t0);
  ASSERT_EQ(r.status, 0) << r.output;
  auto text = read(cfg);
  EXPECT_NE(text.find("distributed_type: MULTI_CPU\n"), std::string::npos) << text;
  EXPECT_NE(text.find("num_processes: 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mixed_precision: bf16\n"), std::string::npos) << text;
  EXPECT_NE(text.find("use_cpu: true\n"), std::string::npos) << text;
}

}  // namespace
