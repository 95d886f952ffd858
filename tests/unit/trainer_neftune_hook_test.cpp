// neftune_noise_alpha through the Trainer (the noise itself:
// tests/unit/trainer_neftune_test.cpp): the first step's loss and
// gradients equal a hand-written step that adds accel::neftune_noise to the
// embeddings from the same seed (and differ from a step without it); an
// evaluation during training sees no noise; the hook is gone after
// train(); without the model's hook the argument is refused by name.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/trainer/neftune.h"
#include "accel/trainer/trainer.h"
#include "accel/util/seed.h"
#include "support/temp_dir.h"

using namespace accel;
using ::testing::HasSubstr;

namespace {

struct EmbedNetImpl : torch::nn::Module {
  torch::nn::Embedding emb{nullptr};
  torch::nn::Linear head{nullptr};
  EmbeddingsHook embeddings_hook;
  EmbedNetImpl() {
    emb = register_module("emb", torch::nn::Embedding(12, 6));
    head = register_module("head", torch::nn::Linear(6, 3));
  }
  torch::Tensor loss(const torch::Tensor& embeddings, const torch::Tensor& labels) {
    return torch::mse_loss(head(embeddings).mean(1), labels);
  }
  torch::Tensor forward(const TensorDict& b) {
    auto h = emb(b.at("input_ids"));
    if (embeddings_hook) h = embeddings_hook(h);
    return loss(h, b.at("labels"));
  }
};
TORCH_MODULE(EmbedNet);

struct Batch {
  torch::Tensor ids, labels;
};

Batch make_batch() {
  torch::manual_seed(5);
  return {torch::randint(0, 12, {8, 5}), torch::randn({8, 3})};
}

std::shared_ptr<Dataset<TensorDict>> rows(const Batch& b) {
  return std::make_shared<LambdaDataset<TensorDict>>(8, [b](int64_t i) {
    return TensorDict{{"input_ids", b.ids[i]}, {"labels", b.labels[i]}};
  });
}

EmbedNet model_from(int seed) {
  torch::manual_seed(seed);
  return EmbedNet();
}

TrainingArguments one_step(const accel::testing::TempDir& dir) {
  return TrainingArguments()
      .output_dir(dir.path().string())
      .per_device_train_batch_size(8)
      .per_device_eval_batch_size(8)
      .max_steps(1)
      .learning_rate(0.1)
      .max_grad_norm(0)
      .logging_steps(1)
      .eval_strategy(IntervalStrategy::steps)
      .eval_steps(1)
      .save_strategy(IntervalStrategy::no)
      .train_sampling_strategy("sequential")
      .seed(17)
      .disable_tqdm(true)
      .use_cpu(true);
}

ModelFunctions<EmbedNet> with_hook() {
  return ModelFunctions<EmbedNet>().set_input_embeddings_hook(
      [](EmbedNet& net, EmbeddingsHook hook) { net->embeddings_hook = std::move(hook); });
}

// The gradients as the optimizer is about to see them.
struct RecordGrads : TrainerCallback {
  std::shared_ptr<torch::nn::Module> module;
  std::map<std::string, torch::Tensor> grads;
  void on_pre_optimizer_step(const Args&, TrainerState&, TrainerControl&) override {
    for (const auto& p : module->named_parameters()) grads[p.key()] = p.value().grad().clone();
  }
};

}  // namespace

TEST(TrainerNeftune, FirstStepEqualsAHandWrittenNoisyStep) {
  accel::testing::TempDir dir("trainer_neftune");
  const Batch batch = make_batch();
  auto trained = model_from(1);
  auto record = std::make_shared<RecordGrads>();
  record->module = trained.ptr();
  Trainer t(trained, one_step(dir).neftune_noise_alpha(5.0), rows(batch), rows(batch), with_hook(), {record});
  t.train();
  EXPECT_FALSE(trained->embeddings_hook) << "the hook must be cleared when training ends";

  // By hand, from the same weights and seed.
  auto hand = model_from(1);
  hand->train();
  accel::set_seed(17);
  const auto noisy = accel::neftune_noise(hand->emb(batch.ids), 5.0);
  const auto loss = hand->loss(noisy, batch.labels);
  loss.backward();
  const auto& log = t.state().log_history;
  ASSERT_GE(log.size(), 2u);
  ASSERT_TRUE(log[0].count("loss"));
  EXPECT_EQ(static_cast<float>(log[0].at("loss")), loss.item<float>());
  for (const auto& p : hand->named_parameters())
    EXPECT_TRUE(torch::allclose(record->grads.at(p.key()), p.value().grad(), 1e-6, 1e-7)) << p.key();

  // Without noise the step is another one (so the comparison above can fail).
  auto plain = model_from(1);
  const auto clean_loss = plain->loss(plain->emb(batch.ids), batch.labels);
  EXPECT_GT(std::abs(clean_loss.item<float>() - loss.item<float>()), 1e-4);

  // The evaluation at step 1 ran while the hook was set: no noise in it.
  torch::NoGradGuard no_grad;
  trained->eval();
  const double eval_by_hand = trained->loss(trained->emb(batch.ids), batch.labels).item<double>();
  ASSERT_TRUE(log[1].count("eval_loss"));
  EXPECT_NEAR(log[1].at("eval_loss"), eval_by_hand, 1e-6);
}

TEST(TrainerNeftune, HookAddsNoiseOnlyInTraining) {
  auto net = model_from(2);
  const auto x = torch::randn({2, 4, 6});
  const auto hook = neftune_hook(net.ptr(), 1.0);
  net->eval();
  EXPECT_TRUE(torch::equal(hook(x), x));
  net->train();
  const auto noisy = hook(x);
  EXPECT_FALSE(torch::equal(noisy, x));
  EXPECT_LE((noisy - x).abs().max().item<double>(), neftune_magnitude(x, 1.0) * (1 + 1e-6));
}

TEST(TrainerNeftune, RefusedWithoutTheModelsHook) {
  accel::testing::TempDir dir("trainer_neftune_refused");
  const Batch batch = make_batch();
  auto net = model_from(1);
  try {
    Trainer t(net, one_step(dir).neftune_noise_alpha(5.0), rows(batch), rows(batch));
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("neftune_noise_alpha = 5"));
    EXPECT_THAT(e.what(), HasSubstr("ModelFunctions::set_input_embeddings_hook"));
  }
  EXPECT_THROW(TrainingArguments().neftune_noise_alpha(0.0).resolved(), std::invalid_argument);
  EXPECT_EQ(TrainingArguments::from_json(R"({"neftune_noise_alpha": 5})").neftune_noise_alpha(), 5.0);
  EXPECT_EQ(TrainingArguments::from_flags({"--neftune_noise_alpha", "0.5"}).neftune_noise_alpha(), 0.5);
}
