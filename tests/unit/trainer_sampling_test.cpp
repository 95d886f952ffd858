// The Trainer's train_sampling_strategy in one process: group_by_length
// trains on the batches LengthGroupedSampler orders (grouped over the
// accumulated step, reshuffled from data_seed + epoch) and evaluates and
// predicts in the evaluation sampler's fixed order; sequential trains in
// dataset order; lengths come from length_column_name; bad values and
// datasets without lengths are refused by name. (Two ranks:
// tests/dist/trainer_sampling_dist_test.cpp; Transformers' exact indices:
// tests/peer/length_grouped_peer_test.cpp.)
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/data/length_grouped_sampler.h"
#include "accel/trainer/trainer.h"
#include "support/errors.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"

using namespace accel;
using accel::testing::error_of;
using accel::testing::TrainerMlp;
using ::testing::HasSubstr;

namespace {

constexpr int64_t kRows = 40;

int64_t length_of(int64_t i) { return (i * 29) % 17 + 1; }

// Rows {x, labels, idx, <length_column>}.
std::shared_ptr<Dataset<TensorDict>> rows(const std::string& length_column = "length") {
  const auto data = accel::testing::regression_data(kRows);
  const auto x = data.first, y = data.second;
  return std::make_shared<LambdaDataset<TensorDict>>(kRows, [x, y, length_column](int64_t i) {
    TensorDict d{{"x", x[i]}, {"labels", y[i]}, {"idx", torch::tensor(i)}};
    if (!length_column.empty()) d[length_column] = torch::tensor(length_of(i));
    return d;
  });
}

std::vector<int64_t> lengths() {
  std::vector<int64_t> l;
  for (int64_t i = 0; i < kRows; ++i) l.push_back(length_of(i));
  return l;
}

TrainingArguments args_for(const accel::testing::TempDir& dir) {
  // 40 rows, batches of 2, accumulation 2: 10 updates an epoch, 2 epochs.
  return TrainingArguments()
      .output_dir(dir.path().string())
      .per_device_train_batch_size(2)
      .per_device_eval_batch_size(3)
      .gradient_accumulation_steps(2)
      .max_steps(20)
      .data_seed(11)
      .save_strategy(IntervalStrategy::no)
      .disable_tqdm(true)
      .use_cpu(true);
}

// The loss of the MLP, recording each training batch's rows in order.
ModelFunctions<TrainerMlp> recording(std::shared_ptr<std::vector<int64_t>> seen) {
  return ModelFunctions<TrainerMlp>()
      .compute_loss([seen](auto& model, const TensorDict& b) {
        if (model->is_training()) {
          auto idx = b.at("idx").contiguous();
          seen->insert(seen->end(), idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
        }
        return torch::mse_loss(model->logits(b.at("x")), b.at("labels"));
      })
      .predict([](auto&, const TensorDict& b) { return b.at("idx").to(torch::kFloat32).unsqueeze(1); });
}

}  // namespace

TEST(TrainerSampling, GroupByLengthTrainsAndEvaluatesInGroupedOrder) {
  accel::testing::TempDir dir("trainer_group_by_length");
  auto seen = std::make_shared<std::vector<int64_t>>();
  auto data = rows();
  TrainerMlp model;
  Trainer t(model, args_for(dir).train_sampling_strategy("group_by_length"), data, data, recording(seen));
  t.train();
  // Grouped over batch * accumulation = 4, epoch e from data_seed + e.
  const LengthGroupedSampler sampler(lengths(), 4, 11);
  auto expected = sampler.indices(0);
  const auto e1 = sampler.indices(1);
  expected.insert(expected.end(), e1.begin(), e1.end());
  EXPECT_EQ(*seen, expected);
  // Evaluation order: grouped over the eval batch, the same every time.
  const auto order = LengthGroupedSampler(lengths(), 3, 11, false).indices(0);
  for (int pass = 0; pass < 2; ++pass) {
    const auto out = t.predict(data);
    ASSERT_EQ(out.predictions.size(0), kRows);
    for (int64_t i = 0; i < kRows; ++i)
      EXPECT_EQ(out.predictions[i][0].item<float>(), static_cast<float>(order[i])) << "position " << i;
  }
}

TEST(TrainerSampling, LengthsFromTheNamedColumnOrTheMainInput) {
  accel::testing::TempDir dir("trainer_length_column");
  auto seen = std::make_shared<std::vector<int64_t>>();
  TrainerMlp model;
  Trainer t(model, args_for(dir).train_sampling_strategy("group_by_length").length_column_name("n_tokens").max_steps(5),
            rows("n_tokens"), nullptr, recording(seen));
  t.train();
  auto expected = LengthGroupedSampler(lengths(), 4, 11).indices(0);
  expected.resize(20);
  EXPECT_EQ(*seen, expected);

  // Without the column, the main input's length: every "x" has 8, so the
  // order is the permutation with the first megabatch's head kept.
  auto seen2 = std::make_shared<std::vector<int64_t>>();
  TrainerMlp model2;
  Trainer t2(model2, args_for(dir).train_sampling_strategy("group_by_length").max_steps(5), rows(""), nullptr,
             recording(seen2).main_input_name("x"));
  t2.train();
  auto permutation = seeded_permutation(kRows, 11);
  permutation.resize(20);
  EXPECT_EQ(*seen2, permutation);
}

TEST(TrainerSampling, SequentialTrainsInDatasetOrder) {
  accel::testing::TempDir dir("trainer_sequential");
  auto seen = std::make_shared<std::vector<int64_t>>();
  TrainerMlp model;
  Trainer t(model, args_for(dir).train_sampling_strategy("sequential"), rows(), nullptr, recording(seen));
  t.train();
  ASSERT_EQ(seen->size(), 2u * kRows);
  for (int64_t i = 0; i < 2 * kRows; ++i) EXPECT_EQ((*seen)[i], i % kRows);
}

TEST(TrainerSampling, RefusesBadStrategiesAndMissingLengths) {
  accel::testing::TempDir dir("trainer_sampling_errors");
  EXPECT_THAT(error_of([&] { TrainingArguments().train_sampling_strategy("batch_rebalance").resolved(); }),
              HasSubstr("train_sampling_strategy = 'batch_rebalance' is not supported"));
  EXPECT_THAT(error_of([&] {
                TrainingArguments::from_flags({"--train_sampling_strategy", "by_size"}).resolved();
              }),
              HasSubstr("train_sampling_strategy = 'by_size', expected one of random, sequential, group_by_length"));
  EXPECT_EQ(TrainingArguments::from_json(R"({"train_sampling_strategy": "group_by_length", "length_column_name": "n"})")
                .length_column_name(),
            "n");
  EXPECT_THAT(error_of([&] {
                TrainerMlp model;
                Trainer t(model, args_for(dir).train_sampling_strategy("group_by_length"), rows(""), nullptr,
                          recording(std::make_shared<std::vector<int64_t>>()));
              }),
              HasSubstr("has neither 'length' (length_column_name) nor 'input_ids' (ModelFunctions::main_input_name)"));
}
