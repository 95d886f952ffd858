// accel::Trainer's activation_checkpointing (Transformers'
// gradient_checkpointing): the model's units recompute their forward in
// backward, and training ends on the weights of the same model trained
// without units (plain LibTorch, no recomputation).
#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/trainer/trainer.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"
#include "support/unit_stack.h"

using namespace accel;
using accel::testing::unit_stack::Stack;
using accel::testing::unit_stack::StackOptions;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

TrainingArguments args(const fs::path& out) {
  return TrainingArguments()
      .output_dir(out.string())
      .per_device_train_batch_size(4)
      .max_steps(3)
      .save_strategy(IntervalStrategy::no)
      .learning_rate(1e-2)
      .weight_decay(0.1)
      .disable_tqdm(true)
      .use_cpu(true);
}

ModelFunctions<Stack> cross_entropy() {
  return ModelFunctions<Stack>().compute_loss([](auto& model, const TensorDict& b) {
    return torch::nn::functional::cross_entropy(model(b.at("x")), b.at("labels"));
  });
}

Stack stack_like(Stack& from, bool units) {
  StackOptions o;
  o.units = units;
  Stack s(o);
  torch::NoGradGuard g;
  auto src = from->named_parameters();
  for (auto& p : s->named_parameters()) p.value().copy_(src[p.key()]);
  return s;
}

}  // namespace

TEST(TrainerCheckpointing, UnitsRecomputeAndTrainAsWithout) {
  accel::testing::TempDir dir("trainer_ckpt_units");
  torch::manual_seed(8);
  const auto x = torch::randn({12, 6});
  const auto y = torch::randint(0, 3, {12}, torch::kLong);
  const auto rows = accel::testing::rows_dataset(x, y);
  Stack init;
  Stack plain = stack_like(init, false), checkpointed = stack_like(init, true);

  Trainer reference(plain, args(dir.path() / "a"), rows, nullptr, cross_entropy());
  reference.train();
  // gradient_checkpointing, the old name, turns it on too.
  Trainer trainer(checkpointed, args(dir.path() / "b").gradient_checkpointing(true), rows, nullptr, cross_entropy());
  EXPECT_EQ(trainer.args().activation_checkpointing(), true);
  trainer.train();

  for (size_t i = 0; i < plain->blocks.size(); ++i) {
    EXPECT_EQ(plain->blocks[i]->forwards, 3);  // one batch per step
    EXPECT_EQ(checkpointed->blocks[i]->forwards, 6) << "block " << i << ": forward, then again in backward";
    EXPECT_TRUE(checkpointed->units[i].slot()->checkpoint());
  }
  auto want = plain->named_parameters();
  for (const auto& p : checkpointed->named_parameters())
    EXPECT_TRUE(torch::allclose(p.value(), want[p.key()], 1e-6, 1e-7)) << p.key();

  // A model without units cannot honour it.
  accel::testing::TrainerMlp mlp;
  try {
    Trainer refused(mlp, args(dir.path() / "c").activation_checkpointing(true),
                    accel::testing::rows_dataset(torch::randn({8, 8}), torch::randn({8, 4})));
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("activation_checkpointing"));
    EXPECT_THAT(e.what(), HasSubstr("accel::Unit"));
  }
}
