// `accel launch` against Accelerate 1.15's `accelerate launch --no_python`:
// config files written by Accelerate's own code are read as they are, and a
// worker gets the same environment, variable by variable. The deliberate
// differences are listed in docs/cli.md and here in kDeliberate.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "accel/dist/launcher.h"
#include "accel_test_paths.h"
#include "support/files.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::testing::binary_path;
using accel::testing::command_output;
using accel::testing::peer_script;
using accel::testing::read_file;
using accel::testing::read_key_values;
using accel::testing::start_program;
using accel::testing::TempDir;
using accel::testing::test_program;
using accel::testing::venv_program;
using accel::testing::wait_for_exit;
using Env = std::map<std::string, std::string>;

// Variables torchrun's agent sets that describe the agent itself: accel has
// no agent, no error-file protocol, and rank 0 (not the launcher) hosts the
// rendezvous store.
// Also the variables Python libraries put into their own process's
// environment when imported (Intel OpenMP's KMP_* and torch._inductor's cache
// folder, seen on the GPU machine), which Accelerate's children inherit but no
// launcher sets.
const std::set<std::string> kDeliberate = {"TORCHELASTIC_ERROR_FILE", "TORCHELASTIC_USE_AGENT_STORE",
                                           "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK", "TORCHINDUCTOR_CACHE_DIR"};
// The variables accel adds when it starts several processes where
// Accelerate's simple launcher starts one.
const std::set<std::string> kPerRank = {"RANK",
                                        "LOCAL_RANK",
                                        "WORLD_SIZE",
                                        "LOCAL_WORLD_SIZE",
                                        "GROUP_RANK",
                                        "GROUP_WORLD_SIZE",
                                        "ROLE_RANK",
                                        "ROLE_WORLD_SIZE",
                                        "ROLE_NAME",
                                        "TORCHELASTIC_RESTART_COUNT",
                                        "TORCHELASTIC_MAX_RESTARTS",
                                        "TORCHELASTIC_RUN_ID",
                                        "TORCHELASTIC_SIGNALS_TO_HANDLE",
                                        "TORCHELASTIC_USE_AGENT_STORE",
                                        "TORCH_NCCL_ASYNC_ERROR_HANDLING"};

// The variables Accelerate's own Python process adds to its environment
// when it starts and imports its launcher (site hooks, torch, MPI bindings;
// they differ per machine): inherited by its children, not set by the
// launcher. On the GPU machine an Open MPI library loaded while Accelerate
// launches adds OMPI_MCA_* and PMIX_MCA_* defaults; those are skipped by
// prefix.
const std::set<std::string>& set_by_python_imports() {
  static const std::set<std::string> names = [] {
    std::set<std::string> out;
    const std::string cmd =
        std::string(ACCEL_PYTHON) + " -c 'import os, accelerate.commands.launch; print(\"\\n\".join(os.environ))'";
    std::istringstream lines(command_output(cmd));
    for (std::string name; std::getline(lines, name);) {
      while (!name.empty() && name.back() == '\r') name.pop_back();
      if (!name.empty() && !std::getenv(name.c_str())) out.insert(name);
    }
    return out;
  }();
  return names;
}

class CliPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_PEERS("torch", "accelerate");
    fs::create_directories(dir_ / "hf");
    port_ = std::to_string(accel::find_free_port());
    std::string cmd = std::string(ACCEL_PYTHON) + " " + peer_script("cli_write_configs.py") + " " +
                      dir_.path().string() + " " + port_;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  void TearDown() override {
    if (HasFailure()) dir_.keep();  // what the launchers wrote, to look at
  }
  std::string cfg(const std::string& name) { return (dir_ / (name + ".yaml")).string(); }

  // Starts `tool launch ARGS... --no_python dump_env.sh`, in the same environment for both tools.
  pid_t start(const std::string& tool, std::vector<std::string> args, int index) {
    std::vector<std::string> argv;
    if (tool == "accel")
      argv = {binary_path("accel"), "launch"};
    else
      argv = {venv_program("accelerate"), "launch"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--no_python");
    argv.push_back(test_program("dump_env.sh"));
    return start_program(argv, dir_ / (tool + std::to_string(index) + ".log"),
                         {.env = {{"HF_HOME", (dir_ / "hf").string()},
                                  {"ACCEL_TEST_OUT", (dir_ / "out").string()},
                                  {"LC_CTYPE", "C.UTF-8"},  // else Python's locale coercion adds it
                                  {"PYTHONPATH", (dir_ / "fakeds").string()},
                                  {"OMP_NUM_THREADS", std::nullopt}},
                          .cwd = dir_});
  }

  // Runs the tool (once per machine rank in `machines`) and collects each worker's env by rank.
  std::map<std::string, Env> run(const std::string& tool, const std::vector<std::string>& args,
                                 const std::vector<std::vector<std::string>>& machines = {{}}) {
    fs::remove_all(dir_ / "out");
    fs::create_directories(dir_ / "out");
    std::vector<pid_t> pids;
    for (size_t m = 0; m < machines.size(); ++m) {
      auto a = args;
      a.insert(a.end(), machines[m].begin(), machines[m].end());
      pids.push_back(start(tool, a, static_cast<int>(m)));
    }
    for (size_t m = 0; m < pids.size(); ++m)
      EXPECT_EQ(wait_for_exit(pids[m]), 0) << tool << " failed:\n"
                                           << read_file(dir_ / (tool + std::to_string(m) + ".log"));
    std::map<std::string, Env> envs;
    for (auto& entry : fs::directory_iterator(dir_ / "out")) {
      envs[entry.path().filename().string().substr(4)] = read_key_values(entry.path());  // "env.<rank>"
    }
    return envs;
  }

  static void expect_same(const Env& accelerate, const Env& accel, const std::string& rank,
                          const std::set<std::string>& accel_extras = {}) {
    for (auto& [k, v] : accelerate) {
      if (kDeliberate.count(k) || set_by_python_imports().count(k) || k.starts_with("OMPI_MCA_") ||
          k.starts_with("PMIX_MCA_"))
        continue;
      auto it = accel.find(k);
      if (it == accel.end())
        ADD_FAILURE() << "rank " << rank << ": accel does not set " << k << "=" << v;
      else
        EXPECT_EQ(it->second, v) << "rank " << rank << ": " << k;
    }
    for (auto& [k, v] : accel)
      if (!accelerate.count(k) && !kDeliberate.count(k) && !accel_extras.count(k))
        ADD_FAILURE() << "rank " << rank << ": accel sets " << k << "=" << v << ", Accelerate does not";
  }

  void compare(const std::vector<std::string>& args, size_t expected_workers,
               const std::vector<std::vector<std::string>>& machines = {{}}) {
    auto theirs = run("accelerate", args, machines);
    auto ours = run("accel", args, machines);
    ASSERT_EQ(theirs.size(), expected_workers);
    ASSERT_EQ(ours.size(), expected_workers);
    for (auto& [rank, env] : theirs) {
      ASSERT_TRUE(ours.count(rank)) << "accel started no rank " << rank;
      expect_same(env, ours[rank], rank);
    }
  }

  // Accelerate's simple launcher starts one process for a MULTI_CPU config (it
  // needs mpirun for more) and for --cpu --num_processes N; accel starts N,
  // each with Accelerate's variables plus the per-rank ones.
  void expect_extension(std::map<std::string, Env> theirs, std::map<std::string, Env> ours) {
    ASSERT_EQ(theirs.size(), 1u);
    ASSERT_TRUE(theirs.count("none"));
    ASSERT_EQ(ours.size(), 2u);
    for (auto& [rank, env] : ours) {
      EXPECT_EQ(env.at("RANK"), rank);
      expect_same(theirs["none"], env, rank, kPerRank);
    }
  }

  TempDir dir_{"cli_peer"};
  std::string port_;
};

TEST_F(CliPeer, ConfigDefaultFile) { compare({"--config_file", cfg("default")}, 1); }

TEST_F(CliPeer, MultiGpuConfigOnACpuMachine) { compare({"--config_file", cfg("multi_gpu")}, 2); }

TEST_F(CliPeer, Fsdp1Config) { compare({"--config_file", cfg("fsdp1")}, 2); }

TEST_F(CliPeer, Fsdp2ConfigWithFlagOverrides) {
  compare({"--config_file", cfg("fsdp2"), "--fsdp_offload_params", "true", "--mixed-precision", "fp16"}, 2);
}

// The YAML's parallelism_config section turns use_parallelism_config on and
// reaches the workers as PARALLELISM_CONFIG_* (CP_COMM_STRATEGY with cp > 1).
TEST_F(CliPeer, ParallelismConfigSection) { compare({"--config_file", cfg("fsdp2_nd")}, 2); }

TEST_F(CliPeer, ParallelismConfigFlags) {
  compare({"--use_fsdp", "--fsdp_version", "2", "--num_processes", "2", "--main_process_port", port_,
           "--use_parallelism_config", "--parallelism_config_tp_size", "2"},
          2);
}

TEST_F(CliPeer, DeepSpeedConfig) { compare({"--config_file", cfg("deepspeed")}, 2); }

TEST_F(CliPeer, MultiGpuFlagsWithoutConfig) {
  compare({"--multi_gpu", "--num_processes", "2", "--mixed_precision", "bf16", "--num_cpu_threads_per_process", "2",
           "--main_process_port", port_, "--debug"},
          2);
}

TEST_F(CliPeer, MultiNodeConfigOnLoopback) {
  compare({"--config_file", cfg("multi_node")}, 4, {{"--machine_rank", "0"}, {"--machine_rank", "1"}});
}

TEST_F(CliPeer, MultiCpuConfigStartsEveryProcess) {
  std::vector<std::string> args = {"--config_file", cfg("multi_cpu")};
  expect_extension(run("accelerate", args), run("accel", args));
}

TEST_F(CliPeer, CpuFlagStartsEveryProcess) {
  std::vector<std::string> args = {"--cpu", "--num_processes",     "2",  "--mixed_precision",
                                   "fp16",  "--main_process_port", port_};
  expect_extension(run("accelerate", args), run("accel", args));
}

}  // namespace
