// The finetune example (examples/finetune) as docs/trainer.md runs it: under
// `accel launch --num_processes 2` on the CPU, a few steps of the GPT-2
// example model on bytes of the repository's docs, evaluated on another
// doc. It must end well, print a lower eval loss and perplexity than before
// training, log a lower eval loss at its second evaluation than at its
// first, and leave its checkpoints and the final model.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/environment.h"
#include "support/files.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using accel::testing::binary_path;
using accel::testing::source_path;

TEST(FinetuneExample, TwoProcessesLowerTheEvalLossAndSaveCheckpoints) {
  accel::testing::TempDir dir("finetune_example");
  const std::string example = binary_path("examples/finetune");
  ASSERT_TRUE(fs::exists(example)) << "build the examples";
  const fs::path out = dir.path() / "out";
  std::vector<accel::testing::EnvChange> env;
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"})
    env.emplace_back(v, std::nullopt);
  env.emplace_back("CUDA_VISIBLE_DEVICES", "");
  env.emplace_back("OMP_NUM_THREADS", "1");
  const auto r = accel::testing::run_program({binary_path("accel"),
                                              "launch",
                                              "--cpu",
                                              "--num_processes",
                                              "2",
                                              "--main_process_port",
                                              "0",
                                              example,
                                              "--train_file",
                                              source_path("docs/trainer.md"),
                                              "--eval_file",
                                              source_path("docs/training.md"),
                                              "--output_dir",
                                              out.string(),
                                              "--max_steps",
                                              "20",
                                              "--per_device_train_batch_size",
                                              "8",
                                              "--learning_rate",
                                              "3e-3",
                                              "--eval_strategy",
                                              "steps",
                                              "--eval_steps",
                                              "10",
                                              "--save_steps",
                                              "10",
                                              "--logging_steps",
                                              "5",
                                              "--disable_tqdm"},
                                             dir.path() / "out.log", {.env = env});
  ASSERT_EQ(r.status, 0) << r.output;

  // "eval_loss A -> B, perplexity exp(A) -> exp(B)", from the main process only.
  const auto at = r.output.find("eval_loss ");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("eval_loss ", at + 1), std::string::npos) << "printed by one process only\n" << r.output;
  double before = 0, after = 0, ppl_before = 0, ppl_after = 0;
  ASSERT_EQ(std::sscanf(r.output.c_str() + at, "eval_loss %lf -> %lf, perplexity %lf -> %lf", &before, &after,
                        &ppl_before, &ppl_after),
            4)
      << r.output;
  EXPECT_LT(after, before);
  EXPECT_NEAR(ppl_before, std::exp(before), 0.01 * ppl_before);
  EXPECT_NEAR(ppl_after, std::exp(after), 0.01 * ppl_after);

  for (const char* name : {"checkpoint-10", "checkpoint-20"}) {
    EXPECT_TRUE(fs::exists(out / name / "trainer_state.json")) << name;
    EXPECT_TRUE(fs::exists(out / name / "model.safetensors")) << name;
  }
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  std::ifstream in(out / "checkpoint-20" / "trainer_state.json");
  const auto state = nlohmann::json::parse(in);
  std::vector<double> eval_losses;
  for (const auto& e : state["log_history"])
    if (e.contains("eval_loss")) eval_losses.push_back(e["eval_loss"].get<double>());
  // The evaluation before training, then those at steps 10 and 20.
  ASSERT_EQ(eval_losses.size(), 3u) << state["log_history"].dump();
  EXPECT_LT(eval_losses[1], eval_losses[0]);
  EXPECT_LT(eval_losses[2], eval_losses[1]);
  EXPECT_NEAR(eval_losses[0], before, 1e-4);  // printed with 4 decimals
}
