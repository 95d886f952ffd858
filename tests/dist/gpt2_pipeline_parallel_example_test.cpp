// The GPT-2 example trained with pipeline stages by configuration alone: the
// same program, started by `accel launch` with Accelerate's
// ACCELERATE_USE_PARALLELISM_CONFIG and PARALLELISM_CONFIG_PP_SIZE=2 (2 CPU
// processes, one stage each; then with PARALLELISM_CONFIG_TP_SIZE=2 too, 4
// processes), logs the losses one process logs for the same seed and
// batches: the stages of one replica share its batches, the schedule runs
// 4 micro-batches (1F1B), the loss comes back from the last stage, and the
// clipping norm spans the stages.
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
  for (const char* v :
       {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
        "ACCELERATE_USE_PARALLELISM_CONFIG", "PARALLELISM_CONFIG_TP_SIZE", "PARALLELISM_CONFIG_PP_SIZE",
        "PARALLELISM_CONFIG_DP_SHARD_SIZE", "PARALLELISM_CONFIG_DP_REPLICATE_SIZE", "PARALLELISM_CONFIG_CP_SIZE"})
    changes.emplace_back(v, std::nullopt);
  changes.insert(changes.end(), env.begin(), env.end());
  return run_program(argv, dir / "out.log", {.env = changes});
}

}  // namespace

TEST(Gpt2PipelineParallelExample, LaunchedWithPpSize2LogsTheLossesOfOneProcess) {
  const TempDir dir("gpt2_pp_example");
  fs::create_directories(dir / "hf");
  const std::vector<std::string> train = {binary_path("examples/gpt2"),
                                          "--config",
                                          "tiny",
                                          "--steps",
                                          "4",
                                          "--batch",
                                          "4",
                                          "--seq",
                                          "32",
                                          "--log-every",
                                          "1",
                                          "--warmup",
                                          "1",
                                          "--microbatches",
                                          "4",
                                          "--clip",
                                          "0.5"};
  const Outcome one = run(dir, train, {});
  ASSERT_EQ(one.status, 0) << one.output;
  const auto want = losses(one.output);
  ASSERT_EQ(want.size(), 4u) << one.output;

  for (const int tp : {1, 2}) {
    std::vector<std::string> launched = {
        binary_path("accel"), "launch", "--cpu", "--num_processes", std::to_string(2 * tp), "--main_process_port", "0"};
    launched.insert(launched.end(), train.begin(), train.end());
    const Outcome many = run(dir, launched,
                             {{"ACCELERATE_USE_PARALLELISM_CONFIG", "true"},
                              {"PARALLELISM_CONFIG_PP_SIZE", "2"},
                              {"PARALLELISM_CONFIG_TP_SIZE", std::to_string(tp)}});
    ASSERT_EQ(many.status, 0) << many.output;
    EXPECT_NE(many.output.find("pipeline parallel over 2 stages (1f1b, 4 micro-batches"), std::string::npos)
        << many.output;
    const auto got = losses(many.output);
    ASSERT_EQ(got.size(), want.size()) << many.output;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 2e-4) << "tp " << tp << ", step " << i + 1;
  }
}
