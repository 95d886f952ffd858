// The Trainer's group_by_length on 2 CPU ranks over Gloo: the grouped
// order (LengthGroupedSampler over batch * accumulation, from data_seed +
// epoch) is cut into batches and dealt out as Accelerate's
// BatchSamplerShard deals them, so each rank trains on exactly its share,
// the same order on both ranks' samplers.
#include <memory>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/data/batch_sampler_shard.h"
#include "accel/data/length_grouped_sampler.h"
#include "accel/trainer/trainer.h"
#include "support/distributed.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"

using namespace accel;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;

TEST(TrainerSamplingDist, GroupByLengthShardsTheGroupedBatches) {
  accel::testing::TempDir dir("trainer_group_by_length_dist");
  run_distributed(2, [&] {
    constexpr int64_t rows = 40;
    seed_cpu(3);
    auto x = torch::randn({rows, 8});
    auto y = torch::sin(x.mm(torch::randn({8, 4})));
    std::vector<int64_t> lengths;
    for (int64_t i = 0; i < rows; ++i) lengths.push_back((i * 29) % 17 + 1);
    auto data = std::make_shared<LambdaDataset<TensorDict>>(rows, [x, y, lengths](int64_t i) {
      return TensorDict{
          {"x", x[i]}, {"labels", y[i]}, {"idx", torch::tensor(i)}, {"length", torch::tensor(lengths[i])}};
    });
    auto seen = std::make_shared<std::vector<int64_t>>();
    auto functions =
        ModelFunctions<accel::testing::TrainerMlp>().compute_loss([seen](auto& model, const TensorDict& b) {
          auto idx = b.at("idx").contiguous();
          seen->insert(seen->end(), idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
          return model(b);  // through the prepared model: DDP's all-reduce
        });
    seed_cpu(1);
    accel::testing::TrainerMlp model;
    // 20 batches of 2, 10 a rank, 5 updates an epoch: 2 epochs.
    auto args = TrainingArguments()
                    .output_dir(dir.path().string())
                    .per_device_train_batch_size(2)
                    .gradient_accumulation_steps(2)
                    .max_steps(10)
                    .data_seed(11)
                    .train_sampling_strategy("group_by_length")
                    .save_strategy(IntervalStrategy::no)
                    .disable_tqdm(true)
                    .use_cpu(true);
    Trainer t(model, args, data, nullptr, functions);
    t.train();
    const int rank = t.accelerator().process_index();
    auto grouped = std::make_shared<LengthGroupedSampler>(lengths, 4, 11);
    const BatchSamplerShard shard(std::make_shared<BatchSampler>(grouped, 2, false), 2, rank);
    std::vector<int64_t> expected;
    for (int64_t epoch = 0; epoch < 2; ++epoch)
      for (const auto& batch : shard.batches(epoch)) expected.insert(expected.end(), batch.begin(), batch.end());
    EXPECT_EQ(*seen, expected) << "rank " << rank;
    ASSERT_EQ(seen->size(), 40u);
  });
}
