// accel::Trainer's loss and counting options in one process:
// label_smoothing_factor replaces the model's loss with the smoothed one on
// the logits (checked against the formula per row in float64),
// include_num_input_tokens_seen = non_padding counts the attention mask,
// eval_on_start evaluates at step 0 without making it the best. (Against
// Transformers: tests/peer/trainer_peer_test.cpp, label_smoother_peer_test.cpp.)
#include <cmath>
#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/trainer/trainer.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"

using namespace accel;
using accel::testing::TrainerMlp;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

TrainingArguments args(const fs::path& out) {
  return TrainingArguments()
      .output_dir(out.string())
      .per_device_train_batch_size(4)
      .per_device_eval_batch_size(4)
      .max_steps(4)
      .save_strategy(IntervalStrategy::no)
      .logging_steps(1)
      .learning_rate(1e-2)
      .disable_tqdm(true)
      .use_cpu(true);
}

ModelFunctions<TrainerMlp> logits_of_x() {
  return ModelFunctions<TrainerMlp>()
      .predict([](auto& model, const TensorDict& b) { return model->logits(b.at("x")); })
      .main_input_name("x");
}

// Per kept label: (1 - eps) * -log p[label] + eps * mean_j -log p[j],
// averaged over the kept labels.
double smoothed_by_rows(const torch::Tensor& logits, const torch::Tensor& labels, double eps) {
  const auto nlp = -torch::log_softmax(logits.to(torch::kFloat64), -1);
  double sum = 0;
  int64_t kept = 0;
  for (int64_t i = 0; i < labels.size(0); ++i) {
    const int64_t c = labels[i].item<int64_t>();
    if (c == -100) continue;
    sum += (1 - eps) * nlp[i][c].item<double>() + eps * nlp[i].mean().item<double>();
    ++kept;
  }
  return sum / static_cast<double>(kept);
}

}  // namespace

// Class labels (with ignored ones) that the model's own mean-squared-error
// forward could not take: the smoothed loss is what trains and evaluates.
TEST(TrainerLoss, LabelSmoothingReplacesTheModelsLoss) {
  accel::testing::TempDir dir("trainer_smoothing");
  torch::manual_seed(4);
  const auto x = torch::randn({16, 8}), ex = torch::randn({12, 8});
  auto y = torch::randint(0, 4, {16}, torch::kLong), ey = torch::randint(0, 4, {12}, torch::kLong);
  y[3] = -100;
  ey[5] = -100;
  TrainerMlp model;
  Trainer trainer(model, args(dir.path()).label_smoothing_factor(0.2), accel::testing::rows_dataset(x, y),
                  accel::testing::rows_dataset(ex, ey), logits_of_x());
  const auto check_eval = [&] {
    const auto metrics = trainer.evaluate();
    torch::NoGradGuard no_grad;
    const auto logits = model->logits(ex);
    double want = 0;
    for (int64_t b = 0; b < 3; ++b)  // each batch's mean counts for its 4 examples
      want += smoothed_by_rows(logits.narrow(0, 4 * b, 4), ey.narrow(0, 4 * b, 4), 0.2) / 3;
    EXPECT_NEAR(metrics.at("eval_loss"), want, 1e-5);
  };
  check_eval();
  const auto trained = trainer.train();  // the MSE forward would throw on these labels
  EXPECT_TRUE(std::isfinite(trained.training_loss));
  check_eval();

  TrainerMlp plain;
  try {
    Trainer refused(plain, args(dir.path()).label_smoothing_factor(0.1), accel::testing::rows_dataset(x, y));
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("label_smoothing_factor"));
    EXPECT_THAT(e.what(), HasSubstr("ModelFunctions::predict"));
  }
}

// One epoch of 4 batches: every attention mask's ones, once; logged with
// every entry.
TEST(TrainerLoss, NonPaddingTokensSeenCountTheAttentionMask) {
  accel::testing::TempDir dir("trainer_tokens");
  torch::manual_seed(5);
  const auto x = torch::randn({16, 8}), y = torch::randn({16, 4});
  const auto mask = torch::randint(0, 2, {16, 6}, torch::kLong);
  auto rows = std::make_shared<LambdaDataset<TensorDict>>(16, [=](int64_t i) {
    return TensorDict{{"x", x[i]}, {"labels", y[i]}, {"attention_mask", mask[i]}};
  });
  TrainerMlp model;
  Trainer trainer(model, args(dir.path()).include_num_input_tokens_seen("non_padding"), rows, nullptr, logits_of_x());
  trainer.train();
  EXPECT_EQ(trainer.state().num_input_tokens_seen, mask.sum().item<int64_t>());
  for (const auto& entry : trainer.state().log_history) EXPECT_EQ(entry.count("num_input_tokens_seen"), 1u);
  EXPECT_EQ(trainer.state().log_history.front().count("train_tokens_per_second"), 1u);

  // "all" counts main_input_name's elements; a batch without it is an error.
  TrainerMlp other;
  Trainer all(other, args(dir.path()).include_num_input_tokens_seen("all"), rows, nullptr, logits_of_x());
  all.train();
  EXPECT_EQ(all.state().num_input_tokens_seen, 16 * 8);
  TrainerMlp third;
  Trainer missing(third, args(dir.path()).include_num_input_tokens_seen("all"), rows, nullptr,
                  logits_of_x().main_input_name("input_ids"));
  try {
    missing.train();
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("input_ids"));
  }
}

// The step-0 evaluation is logged but is no candidate for the best model:
// with greater_is_better the untrained loss, the highest, would be the best.
TEST(TrainerLoss, EvalOnStartIsNotTheBest) {
  accel::testing::TempDir dir("trainer_eval_on_start");
  torch::manual_seed(6);
  const auto x = torch::randn({16, 8}), y = torch::randn({16, 4});
  TrainerMlp model;
  Trainer trainer(model,
                  args(dir.path())
                      .eval_on_start(true)
                      .eval_strategy(IntervalStrategy::steps)
                      .eval_steps(2)
                      .metric_for_best_model("loss")
                      .greater_is_better(true),
                  accel::testing::rows_dataset(x, y), accel::testing::rows_dataset(x, y));
  trainer.train();
  const auto& h = trainer.state().log_history;
  ASSERT_FALSE(h.empty());
  EXPECT_EQ(h.front().at("step"), 0);
  EXPECT_EQ(h.front().count("eval_loss"), 1u);
  int evaluations = 0;
  double best_later = -1e300;
  for (const auto& e : h)
    if (e.count("eval_loss")) {
      ++evaluations;
      if (e.at("step") > 0) best_later = std::max(best_later, e.at("eval_loss"));
    }
  EXPECT_EQ(evaluations, 3);  // steps 0, 2 and 4
  EXPECT_GT(h.front().at("eval_loss"), best_later);
  ASSERT_TRUE(trainer.state().best_metric);
  EXPECT_DOUBLE_EQ(*trainer.state().best_metric, best_later);
}
