// The GPT-2 example made context-parallel by configuration alone: the same
// program, started by `accel launch` on 2 CPU processes with Accelerate's
// ACCELERATE_USE_PARALLELISM_CONFIG / PARALLELISM_CONFIG_CP_SIZE=2 (each
// strategy), logs the losses one process logs for the same seed and batches
// (the cp ranks share a replica's batches, each trains on its part of every
// sequence, and the logged loss is the mean of the parts').
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "support/environment.h"
#include "support/files.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::testing::binary_path;
using accel::testing::EnvChange;
using accel::testing::Outcome;
using accel::testing::run_program;
using accel::testing::TempDir;

// The "loss X" of every "step N/M" line, in order.
std::vector<double> losses(const std::string& output) {
  std::vector<double> out;
  const std::regex line(R"(step (\d+)/\d+\s+loss ([0-9.eE+-]+))");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), line); it != std::sregex_iterator(); ++it)
    out.push_back(std::stod((*it)[2]));
  return out;
}

Outcome run(const fs::path& dir, std::vector<std::string> argv, const std::map<std::string, std::string>& env) {
  std::vector<EnvChange> changes = {{"HF_HOME", (dir / "hf").string()}, {"CUDA_VISIBLE_DEVICES", ""}};
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                        "ACCELERATE_USE_PARALLELISM_CONFIG", "PARALLELISM_CONFIG_TP_SIZE", "PARALLELISM_CONFIG_CP_SIZE",
                        "PARALLELISM_CONFIG_CP_COMM_STRATEGY"})
    changes.emplace_back(v, std::nullopt);
  changes.insert(changes.end(), env.begin(), env.end());
  return run_program(argv, dir / "out.log", {.env = changes});
}

}  // namespace

TEST(Gpt2ContextParallelExample, LaunchedWithCpSize2LogsTheLossesOfOneProcess) {
  const TempDir dir("gpt2_cp_example");
  fs::create_directories(dir / "hf");
  const std::vector<std::string> train = {binary_path("examples/gpt2"),
                                          "--config",
                                          "tiny",
                                          "--steps",
                                          "4",
                                          "--batch",
                                          "2",
                                          "--seq",
                                          "32",
                                          "--log-every",
                                          "1",
                                          "--warmup",
                                          "1"};
  const Outcome one = run(dir, train, {});
  ASSERT_EQ(one.status, 0) << one.output;
  const auto want = losses(one.output);
  ASSERT_EQ(want.size(), 4u) << one.output;

  std::vector<std::string> launched = {binary_path("accel"),  "launch", "--cpu", "--num_processes", "2",
                                       "--main_process_port", "0"};
  launched.insert(launched.end(), train.begin(), train.end());
  for (const std::string strategy : {"allgather", "alltoall"}) {
    SCOPED_TRACE(strategy);
    const Outcome two = run(dir, launched,
                            {{"ACCELERATE_USE_PARALLELISM_CONFIG", "true"},
                             {"PARALLELISM_CONFIG_CP_SIZE", "2"},
                             {"PARALLELISM_CONFIG_CP_COMM_STRATEGY", strategy}});
    ASSERT_EQ(two.status, 0) << two.output;
    EXPECT_NE(two.output.find("context parallel over 2 processes (" + strategy + ")"), std::string::npos) << two.output;
    const auto got = losses(two.output);
    ASSERT_EQ(got.size(), want.size()) << two.output;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 2e-4) << "step " << i + 1;
  }
}

TEST(Gpt2ContextParallelExample, RefusesASequenceTheSplitCannotHold) {
  const TempDir dir("gpt2_cp_example_seq");
  fs::create_directories(dir / "hf");
  const Outcome two =
      run(dir,
          {binary_path("accel"), "launch", "--cpu", "--num_processes", "2", "--main_process_port", "0",
           binary_path("examples/gpt2"), "--config", "tiny", "--steps", "4", "--batch", "2", "--seq", "30"},
          {{"ACCELERATE_USE_PARALLELISM_CONFIG", "true"}, {"PARALLELISM_CONFIG_CP_SIZE", "2"}});
  EXPECT_NE(two.status, 0);
  EXPECT_NE(two.output.find("--seq 30 does not divide by 2 * cp_size = 4"), std::string::npos) << two.output;
}
