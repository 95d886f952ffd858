// accel::Trainer::predict in one process: predictions and test_ metrics
// against the model run directly, datasets without labels, the callbacks'
// events, and that the test loader stays out of checkpoints. (Against
// Transformers' predict with 1 and 2 processes: tests/peer/
// trainer_peer_test.cpp.)
#include <filesystem>
#include <set>
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

struct Rows {
  torch::Tensor x, y;
};

Rows rows(int64_t n, int seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 8});
  return {x, torch::sin(x.sum(1, true)).repeat({1, 4}) + 0.1 * torch::randn({n, 4})};
}

TrainingArguments args(const fs::path& out) {
  return TrainingArguments()
      .output_dir(out.string())
      .per_device_train_batch_size(4)
      .per_device_eval_batch_size(4)
      .max_steps(4)
      .save_steps(4)
      .learning_rate(1e-2)
      .disable_tqdm(true)
      .use_cpu(true);
}

ModelFunctions<TrainerMlp> functions() {
  return ModelFunctions<TrainerMlp>()
      .predict([](auto& model, const TensorDict& b) { return model->logits(b.at("x")); })
      .compute_metrics([](const EvalPrediction& p) {
        return Metrics{{"max_error", (p.predictions - p.label_ids).abs().max().item<double>()}};
      });
}

struct Counting : TrainerCallback {
  int steps = 0;
  Metrics predicted;
  void on_prediction_step(const Args&, TrainerState&, TrainerControl&) override { ++steps; }
  void on_predict(const Args&, TrainerState&, TrainerControl&, const Metrics& m) override { predicted = m; }
};

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) out.insert(fs::relative(e.path(), dir).string());
  return out;
}

}  // namespace

// 11 rows in batches of 4, 4 and 3: every example once, in order; the loss
// is the mean over examples of their batch's mean squared error.
TEST(TrainerPredict, PredictionsAndTestMetricsAsTheModelComputesThem) {
  accel::testing::TempDir dir("trainer_predict");
  const auto train = rows(16, 1), test = rows(11, 2);
  torch::manual_seed(5);
  TrainerMlp model;
  auto counting = std::make_shared<Counting>();
  Trainer trainer(model, args(dir.path()), accel::testing::rows_dataset(train.x, train.y), nullptr, functions(),
                  {counting});
  const auto out = trainer.predict(accel::testing::rows_dataset(test.x, test.y));

  torch::NoGradGuard no_grad;
  model->eval();
  const auto logits = model->logits(test.x);
  ASSERT_TRUE(out.predictions.defined());
  EXPECT_TRUE(torch::allclose(out.predictions, logits, 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(out.label_ids, test.y));
  double loss_sum = 0;
  for (int64_t start = 0; start < 11; start += 4) {
    const int64_t n = std::min<int64_t>(4, 11 - start);
    loss_sum += n * torch::mse_loss(logits.narrow(0, start, n), test.y.narrow(0, start, n)).item<double>();
  }
  EXPECT_NEAR(out.metrics.at("test_loss"), loss_sum / 11, 1e-6);
  EXPECT_NEAR(out.metrics.at("test_max_error"), (logits - test.y).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(out.metrics.count("test_runtime"), 1u);
  EXPECT_EQ(out.metrics.count("eval_loss"), 0u);
  EXPECT_EQ(counting->steps, 3);
  EXPECT_EQ(counting->predicted, out.metrics);
  // predict() does not log.
  EXPECT_TRUE(trainer.state().log_history.empty());
}

// A test set without labels: predictions only, no loss; without a predict
// function there is nothing to compute, which is an error naming why.
TEST(TrainerPredict, WithoutLabels) {
  accel::testing::TempDir dir("trainer_predict_nolabels");
  const auto train = rows(16, 1), test = rows(6, 3);
  auto unlabeled = std::make_shared<LambdaDataset<TensorDict>>(6, [x = test.x](int64_t i) {
    return TensorDict{{"x", x[i]}};
  });
  torch::manual_seed(5);
  TrainerMlp model;
  Trainer trainer(model, args(dir.path()), accel::testing::rows_dataset(train.x, train.y), nullptr, functions());
  const auto out = trainer.predict(unlabeled);
  EXPECT_FALSE(out.label_ids.defined());
  EXPECT_EQ(out.metrics.count("test_loss"), 0u);
  EXPECT_EQ(out.metrics.count("test_max_error"), 0u);  // no labels: no compute_metrics
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose(out.predictions, model->logits(test.x), 1e-6, 1e-6));
  }

  TrainerMlp plain;
  Trainer loss_only(plain, args(dir.path()), accel::testing::rows_dataset(train.x, train.y));
  try {
    loss_only.predict(unlabeled);
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("label"));
    EXPECT_THAT(e.what(), HasSubstr("ModelFunctions::predict"));
  }
  EXPECT_THROW(loss_only.predict(nullptr), std::invalid_argument);
}

// The test loader is not saved with the state: a checkpoint taken after a
// predict() holds the same files as one taken without, and resumes.
TEST(TrainerPredict, TestLoaderStaysOutOfCheckpoints) {
  accel::testing::TempDir dir("trainer_predict_ckpt");
  const auto train = rows(16, 1), test = rows(11, 2);
  const auto train_set = accel::testing::rows_dataset(train.x, train.y);
  torch::manual_seed(5);
  TrainerMlp a;
  Trainer plain(a, args(dir.path() / "a"), train_set, nullptr, functions());
  plain.train();
  torch::manual_seed(5);
  TrainerMlp b;
  Trainer predicting(b, args(dir.path() / "b"), train_set, nullptr, functions());
  predicting.predict(accel::testing::rows_dataset(test.x, test.y));
  predicting.train();
  EXPECT_EQ(files_in(dir.path() / "a" / "checkpoint-4"), files_in(dir.path() / "b" / "checkpoint-4"));
  for (const auto& p : a->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), b->named_parameters()[p.key()]));

  TrainerMlp c;
  Trainer resumed(c, args(dir.path() / "b").max_steps(6), train_set, nullptr, functions());
  resumed.predict(accel::testing::rows_dataset(test.x, test.y));
  EXPECT_NO_THROW(resumed.train("last"));
  EXPECT_EQ(resumed.state().global_step, 6);
}
