// torch_compile on the CPU: the Trainer runs its step through
// Accelerator::capture_step, which without CUDA calls it eagerly: the run
// must equal one without torch_compile bit for bit (losses, gradient norms,
// weights). What a captured step cannot do is refused on every device, so
// a CPU run catches it before a GPU run would: accumulation, fp16, a
// non-fused optimizer, a short last batch. (Capture on a GPU:
// tests/gpu/trainer_gpu_test.cpp.)
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/trainer/trainer.h"
#include "support/errors.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"

using namespace accel;
using accel::testing::error_of;
using accel::testing::TrainerMlp;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<Dataset<TensorDict>> rows(int64_t n) {
  auto [x, y] = accel::testing::regression_data(n);
  return accel::testing::rows_dataset(x, y);
}

TrainingArguments args_for(const fs::path& out) {
  return TrainingArguments()
      .output_dir(out.string())
      .per_device_train_batch_size(4)
      .max_steps(12)
      .learning_rate(1e-2)
      .warmup_steps(3)
      .max_grad_norm(0.5)
      .logging_steps(1)
      .save_strategy(IntervalStrategy::no)
      .disable_tqdm(true)
      .use_cpu(true);
}

}  // namespace

TEST(TrainerCompile, OnTheCpuTheStepRunsEagerlyWithTheSameResults) {
  accel::testing::TempDir dir("trainer_compile_cpu");
  std::vector<std::vector<Metrics>> histories;
  std::vector<TrainerMlp> models;
  for (const bool compile : {false, true}) {
    torch::manual_seed(1);
    TrainerMlp model;
    Trainer t(model, args_for(dir.path() / (compile ? "compiled" : "eager")).torch_compile(compile), rows(36));
    t.train();
    histories.push_back(t.state().log_history);
    models.push_back(model);
  }
  ASSERT_EQ(histories[0].size(), 13u);  // 12 steps and the summary
  ASSERT_EQ(histories[0].size(), histories[1].size());
  for (size_t i = 0; i + 1 < histories[0].size(); ++i) {
    EXPECT_EQ(histories[0][i].at("loss"), histories[1][i].at("loss")) << "step " << i + 1;
    EXPECT_EQ(histories[0][i].at("grad_norm"), histories[1][i].at("grad_norm")) << "step " << i + 1;
    EXPECT_EQ(histories[0][i].at("learning_rate"), histories[1][i].at("learning_rate")) << "step " << i + 1;
  }
  for (const auto& p : models[0]->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), models[1]->named_parameters()[p.key()])) << p.key();
}

TEST(TrainerCompile, RefusesWhatACapturedStepCannotDo) {
  accel::testing::TempDir dir("trainer_compile_refusals");
  const auto compiled = args_for(dir.path()).torch_compile(true);
  EXPECT_THAT(error_of([&] { TrainingArguments(compiled).gradient_accumulation_steps(2).resolved(); }),
              HasSubstr("torch_compile captures one whole step as a CUDA graph, which needs "
                        "gradient_accumulation_steps = 1 (got 2)"));
  EXPECT_THAT(error_of([&] { TrainingArguments(compiled).fp16(true).resolved(); }),
              HasSubstr("torch_compile cannot capture fp16's loss scaling"));
  EXPECT_THAT(error_of([&] { TrainingArguments(compiled).optim("adamw_torch").resolved(); }),
              HasSubstr("torch_compile needs optim = adamw_torch_fused"));
  EXPECT_TRUE(TrainingArguments::from_flags({"--torch_compile"}).torch_compile());
  // 34 rows in batches of 4 leave a batch of 2.
  TrainerMlp model;
  Trainer t(model, compiled, rows(34));
  EXPECT_THAT(error_of([&] { t.train(); }),
              HasSubstr("34 examples in batches of 4 on 1 process(es) leave a short last batch; set "
                        "dataloader_drop_last"));
  TrainerMlp dropped;
  Trainer u(dropped, TrainingArguments(compiled).dataloader_drop_last(true), rows(34));
  EXPECT_EQ(u.train().global_step, 12);
}
