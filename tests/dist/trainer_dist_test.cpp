// accel::Trainer on 2 CPU ranks over Gloo: a run of 8 steps straight, and a
// run stopped after 4 steps (mid-epoch) and resumed from its checkpoint by
// new processes, end with bit-identical weights and the same log_history.
// The model has dropout, so each rank's restored random state matters, and
// the shuffled, sharded loader must skip exactly the batches each rank had
// already trained on. (One process against transformers.Trainer:
// tests/peer/trainer_peer_test.cpp.)
#include <filesystem>
#include <optional>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/trainer/trainer.h"
#include "support/distributed.h"
#include "support/temp_dir.h"

using namespace accel;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;
namespace fs = std::filesystem;

namespace {

struct DropNetImpl : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Dropout drop{nullptr};
  DropNetImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(8, 16));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({16})));
    drop = register_module("drop", torch::nn::Dropout(0.3));
    fc2 = register_module("fc2", torch::nn::Linear(16, 4));
  }
  torch::Tensor forward(const TensorDict& b) {
    return torch::mse_loss(fc2(drop(torch::tanh(norm(fc1(b.at("x")))))), b.at("labels"));
  }
};
TORCH_MODULE(DropNet);

std::shared_ptr<Dataset<TensorDict>> rows() {
  seed_cpu(3);
  auto x = torch::randn({44, 8});
  auto y = torch::sin(x.mm(torch::randn({8, 4})));
  return std::make_shared<LambdaDataset<TensorDict>>(44, [x, y](int64_t i) {
    return TensorDict{{"x", x[i]}, {"labels", y[i]}};
  });
}

struct StopAt : TrainerCallback {
  int64_t step;
  explicit StopAt(int64_t s) : step(s) {}
  void on_step_end(const Args&, TrainerState& s, TrainerControl& c) override {
    if (s.global_step == step) c.should_training_stop = true;
  }
};

// Trains in this process (a rank): from weights seeded with `init_seed`,
// stopping after `stop_at` steps when given, resuming when asked.
void train(const fs::path& out, int init_seed, std::optional<int64_t> stop_at, bool resume) {
  auto data = rows();
  seed_cpu(init_seed);
  DropNet model;
  auto args = TrainingArguments()
                  .output_dir(out.string())
                  .per_device_train_batch_size(2)
                  .gradient_accumulation_steps(2)
                  .max_steps(8)
                  .learning_rate(1e-2)
                  .weight_decay(0.05)
                  .warmup_steps(2)
                  .logging_steps(1)
                  .save_steps(4)
                  .disable_tqdm(true)
                  .use_cpu(true);
  Trainer::Callbacks callbacks;
  if (stop_at) callbacks.push_back(std::make_shared<StopAt>(*stop_at));
  Trainer t(model, args, data, nullptr, {}, callbacks);
  t.train(resume ? std::optional<std::string>("last") : std::nullopt);
  EXPECT_EQ(t.state().global_step, stop_at.value_or(8));
}

}  // namespace

TEST(TrainerDist, ResumeInNewProcessesContinuesExactly) {
  accel::testing::TempDir dir("trainer_dist_resume");
  // 44 rows in batches of 2 per rank: 11 batches a rank, 6 updates an
  // epoch (the last of 1 batch); the stop at step 4 is mid-epoch (8 batches
  // to skip), and step 8 is the second update of epoch 1.
  run_distributed(2, [&] { train(dir.path() / "straight", 1, std::nullopt, false); });
  run_distributed(2, [&] { train(dir.path() / "resumed", 1, 4, false); });
  ASSERT_TRUE(fs::exists(dir.path() / "resumed" / "checkpoint-4" / "trainer_state.json"));
  run_distributed(2, [&] { train(dir.path() / "resumed", 2, std::nullopt, true); });

  const auto a = safetensors::load_file(dir.path() / "straight" / "checkpoint-8" / "model.safetensors");
  const auto b = safetensors::load_file(dir.path() / "resumed" / "checkpoint-8" / "model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  const auto sa = TrainerState::load(dir.path() / "straight" / "checkpoint-8" / "trainer_state.json");
  const auto sb = TrainerState::load(dir.path() / "resumed" / "checkpoint-8" / "trainer_state.json");
  EXPECT_EQ(sa.log_history, sb.log_history);
  EXPECT_EQ(sa.log_history.size(), 8u);
  EXPECT_DOUBLE_EQ(sb.epoch, 1.0 + 4.0 / 11.0);
}
