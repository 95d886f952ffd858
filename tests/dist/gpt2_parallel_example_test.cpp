// The GPT-2 example split by configuration alone: the same program, started
// by `accel launch` on CPU processes with Accelerate's
// ACCELERATE_USE_PARALLELISM_CONFIG and PARALLELISM_CONFIG_*_SIZE, logs the
// losses one process logs for the same seed and batches:
// - tensor parallel (tp=2): the tp ranks share a replica's batches, the
//   scheduler counts one data-parallel rank;
// - context parallel (cp=2, each strategy): each cp rank trains on its part
//   of every sequence, the logged loss is the mean of the parts';
// - pipeline parallel (pp=2, then pp=2 x tp=2 on 4 processes): the stages of
//   one replica share its batches, the schedule runs 4 micro-batches
//   (1F1B), the loss comes back from the last stage, and the clipping norm
//   spans the stages.
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

// Runs argv with `env` over an environment cleared of what a launcher or a
// parallelism configuration of the calling shell would add.
Outcome run(const fs::path& dir, const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
  std::vector<EnvChange> changes = {{"HF_HOME", (dir / "hf").string()}, {"CUDA_VISIBLE_DEVICES", ""}};
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                        "ACCELERATE_USE_PARALLELISM_CONFIG", "PARALLELISM_CONFIG_TP_SIZE", "PARALLELISM_CONFIG_PP_SIZE",
                        "PARALLELISM_CONFIG_CP_SIZE", "PARALLELISM_CONFIG_CP_COMM_STRATEGY",
                        "PARALLELISM_CONFIG_DP_SHARD_SIZE", "PARALLELISM_CONFIG_DP_REPLICATE_SIZE"})
    changes.emplace_back(v, std::nullopt);
  changes.insert(changes.end(), env.begin(), env.end());
  return run_program(argv, dir / "out.log", {.env = changes});
}

// The example on the tiny config, 4 steps logged each, plus `extra` flags.
std::vector<std::string> training(int64_t batch, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {binary_path("examples/gpt2"),
                                   "--config",
                                   "tiny",
                                   "--steps",
                                   "4",
                                   "--batch",
                                   std::to_string(batch),
                                   "--seq",
                                   "32",
                                   "--log-every",
                                   "1",
                                   "--warmup",
                                   "1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

std::vector<std::string> launched(int processes, const std::vector<std::string>& program) {
  std::vector<std::string> argv = {
      binary_path("accel"),  "launch", "--cpu", "--num_processes", std::to_string(processes),
      "--main_process_port", "0"};
  argv.insert(argv.end(), program.begin(), program.end());
  return argv;
}

// One launch of the example: its process count, the parallelism
// variables, and the line it must print about the split.
struct Layout {
  int processes;
  std::map<std::string, std::string> env;
  std::string banner;
};

// Trains `program` in one process, then launched once per layout; each
// launch must print its banner and log the one process's losses.
void expect_losses_of_one_process(const std::string& name, const std::vector<std::string>& program,
                                  const std::vector<Layout>& layouts) {
  const TempDir dir(name);
  fs::create_directories(dir / "hf");
  const Outcome one = run(dir, program, {});
  ASSERT_EQ(one.status, 0) << one.output;
  const auto want = losses(one.output);
  ASSERT_EQ(want.size(), 4u) << one.output;
  for (const auto& layout : layouts) {
    SCOPED_TRACE(layout.banner + " on " + std::to_string(layout.processes) + " processes");
    auto env = layout.env;
    env["ACCELERATE_USE_PARALLELISM_CONFIG"] = "true";
    const Outcome many = run(dir, launched(layout.processes, program), env);
    ASSERT_EQ(many.status, 0) << many.output;
    EXPECT_NE(many.output.find(layout.banner), std::string::npos) << many.output;
    const auto got = losses(many.output);
    ASSERT_EQ(got.size(), want.size()) << many.output;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 2e-4) << "step " << i + 1;
  }
}

}  // namespace

TEST(Gpt2TensorParallelExample, LaunchedWithTpSize2LogsTheLossesOfOneProcess) {
  expect_losses_of_one_process("gpt2_tp_example", training(2),
                               {{2, {{"PARALLELISM_CONFIG_TP_SIZE", "2"}}, "tensor parallel over 2 processes"}});
}

TEST(Gpt2ContextParallelExample, LaunchedWithCpSize2LogsTheLossesOfOneProcess) {
  std::vector<Layout> layouts;
  for (const std::string strategy : {"allgather", "alltoall"})
    layouts.push_back({2,
                       {{"PARALLELISM_CONFIG_CP_SIZE", "2"}, {"PARALLELISM_CONFIG_CP_COMM_STRATEGY", strategy}},
                       "context parallel over 2 processes (" + strategy + ")"});
  expect_losses_of_one_process("gpt2_cp_example", training(2), layouts);
}

TEST(Gpt2ContextParallelExample, RefusesASequenceTheSplitCannotHold) {
  const TempDir dir("gpt2_cp_example_seq");
  fs::create_directories(dir / "hf");
  const Outcome two = run(
      dir,
      launched(2, {binary_path("examples/gpt2"), "--config", "tiny", "--steps", "4", "--batch", "2", "--seq", "30"}),
      {{"ACCELERATE_USE_PARALLELISM_CONFIG", "true"}, {"PARALLELISM_CONFIG_CP_SIZE", "2"}});
  EXPECT_NE(two.status, 0);
  EXPECT_NE(two.output.find("--seq 30 does not divide by 2 * cp_size = 4"), std::string::npos) << two.output;
}

TEST(Gpt2PipelineParallelExample, LaunchedWithPpSize2LogsTheLossesOfOneProcess) {
  const std::string banner = "pipeline parallel over 2 stages (1f1b, 4 micro-batches";
  expect_losses_of_one_process(
      "gpt2_pp_example", training(4, {"--microbatches", "4", "--clip", "0.5"}),
      {{2, {{"PARALLELISM_CONFIG_PP_SIZE", "2"}}, banner},
       {4, {{"PARALLELISM_CONFIG_PP_SIZE", "2"}, {"PARALLELISM_CONFIG_TP_SIZE", "2"}}, banner}});
}
