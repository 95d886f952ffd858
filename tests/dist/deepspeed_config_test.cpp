// What a DeepSpeed config given through the launcher's variables
// (ACCELERATE_USE_DEEPSPEED, ACCELERATE_DEEPSPEED_CONFIG_FILE) does to an
// Accelerator beyond sharding: the engine's gradient clipping at every step,
// the fp16 section's loss scaler, and the batch sizes and optimizer checked
// at prepare(), the bucket size "auto" takes from the model. Clipping runs on
// 1 process (no ZeRO engine) and on 2 (ZeRO-2): it must hold on both paths.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "accel/accelerator.h"
#include "accel/data/data_loader.h"
#include "accel/parallel/zero/zero_engine.h"
#include "support/classifier.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::error_of;
using accel::testing::max_diff;
using accel::testing::run_distributed;
using accel::testing::seed_cpu;
using accel::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
namespace classifier = accel::testing::classifier;
namespace F = torch::nn::functional;
namespace fs = std::filesystem;

namespace {

using Net = classifier::Net<>;
constexpr int64_t kSamples = 48;

// The config in a file of `dir`.
std::string write_config(const fs::path& dir, const std::string& name, const std::string& json) {
  const auto path = dir / (name + ".json");
  std::ofstream(path) << json;
  return path.string();
}

// The process's environment (the ranks' variables) with `vars` on top.
EnvLookup env_with(std::map<std::string, std::string> vars) {
  auto base = process_env();
  return [vars = std::move(vars), base](const std::string& name) -> std::optional<std::string> {
    if (auto it = vars.find(name); it != vars.end()) return it->second;
    return base(name);
  };
}

AcceleratorOptions deepspeed(const std::string& config_file) {
  return AcceleratorOptions().env(
      env_with({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_DEEPSPEED_CONFIG_FILE", config_file}}));
}

struct Run {
  std::vector<torch::Tensor> params;
  std::vector<double> norms;    // what the user's clip_grad_norm_ returned
  bool through_engine = false;  // the optimizer steps ZeRO slices (or masters)
};

// SGD (its update is proportional to the gradient, so a clip shows), 4 rows
// per rank per step; `user_clip` > 0: the user clips at each step.
Run train(AcceleratorOptions options, double user_clip) {
  Accelerator acc(std::move(options));
  seed_cpu(7);
  Net net;
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.2));
  auto [model, optimizer, data] = acc.prepare(net, opt, classifier::loader(kSamples, 4));
  Run r;
  r.through_engine = optimizer->tensors() != nullptr;
  for (auto& b : data) {
    auto scope = acc.accumulate(model);
    acc.backward(3.0 * F::cross_entropy(model(b["x"]), b["y"]));
    if (user_clip > 0) r.norms.push_back(acc.clip_grad_norm_(net->parameters(), user_clip).item<double>());
    optimizer->step();
    optimizer->zero_grad();
  }
  for (auto& p : net->parameters()) r.params.push_back(p.detach().clone());
  return r;
}

}  // namespace

TEST(DeepSpeedConfig, GradientClippingClipsEveryStepWithoutAClipCall) {
  for (int ranks : {1, 2}) {
    run_distributed(ranks, [ranks] {
      const TempDir dir("deepspeed");
      const auto clip = write_config(dir, "clip", R"({"zero_optimization": {"stage": 2}, "gradient_clipping": 0.5})");
      const auto none = write_config(dir, "none", R"({"zero_optimization": {"stage": 2}})");
      const auto engine = train(deepspeed(clip), 0.0);
      EXPECT_TRUE(engine.through_engine) << "the ZeRO-2 engine steps (with one process too)";
      // The same engine without gradient_clipping, the user clipping at 0.5.
      const auto user = train(deepspeed(none), 0.5);
      ASSERT_FALSE(user.norms.empty());
      EXPECT_GT(user.norms.front(), 0.5) << "clipping must really happen";
      EXPECT_LT(max_diff(engine.params, user.params), 1e-6);
      // A plain run (DDP or one process, no DeepSpeed) clipping at 0.5.
      const auto plain = train(AcceleratorOptions().env(env_with({})), 0.5);
      EXPECT_LT(max_diff(engine.params, plain.params), 1e-6);
      // Without any clipping the result differs: the comparison can fail.
      const auto unclipped = train(deepspeed(none), 0.0);
      EXPECT_GT(max_diff(engine.params, unclipped.params), 1e-3);
      // The user's clip stands for the engine's in that step: clipping at 2
      // under gradient_clipping 0.5 is clipping at 2, not at 0.5 after it.
      const auto user_wins = train(deepspeed(clip), 2.0);
      const auto user_only = train(deepspeed(none), 2.0);
      EXPECT_LT(max_diff(user_wins.params, user_only.params), 1e-6);
      EXPECT_GT(max_diff(user_wins.params, engine.params), 1e-3);
    });
  }
}

TEST(DeepSpeedConfig, Fp16SectionIsTheAcceleratorsScaler) {
  // fp16 autocast and loss scaling run on the CPU here (as the other fp16
  // Accelerator tests do), so this needs no GPU.
  run_distributed(1, [] {
    const TempDir dir("deepspeed");
    const auto file = write_config(dir, "fp16", R"({"zero_optimization": {"stage": 2}, "fp16": {"enabled": true,
        "initial_scale_power": 10, "loss_scale_window": 3, "hysteresis": 2, "min_loss_scale": 0.5}})");
    Accelerator acc(deepspeed(file));
    fs::remove(file);
    EXPECT_EQ(acc.mixed_precision(), MixedPrecision::fp16);
    ASSERT_NE(acc.scaler(), nullptr);
    EXPECT_EQ(acc.scaler()->get_scale(), 1024.0);  // 2^initial_scale_power
    EXPECT_EQ(acc.scaler()->options().growth_interval(), 3);
    EXPECT_EQ(acc.scaler()->options().hysteresis(), 2);
    EXPECT_EQ(acc.scaler()->options().min_scale(), 0.5);
    // The first overflow only uses the hysteresis up; the second backs off.
    seed_cpu(3);
    Net net;
    auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
    auto [model, optimizer] = acc.prepare(net, opt);
    auto x = torch::randn({4, 6}, at::detail::createCPUGenerator(5));
    auto y = torch::randint(0, 3, {4}, at::detail::createCPUGenerator(6));
    for (double want : {1024.0, 512.0}) {
      // An infinite loss: under ZeRO-2 the model's own .grad is released
      // after backward, so the overflow comes through the loss.
      acc.backward(F::cross_entropy(model(x), y) * std::numeric_limits<float>::infinity());
      optimizer->step();
      optimizer->zero_grad();
      EXPECT_TRUE(optimizer->step_was_skipped());
      EXPECT_EQ(acc.scaler()->get_scale(), want);
    }
  });
}

TEST(DeepSpeedConfig, BatchSizeAndOptimizerAreCheckedAtPrepare) {
  run_distributed(1, [] {
    const TempDir dir("deepspeed");
    const auto batch =
        write_config(dir, "batch", R"({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 8})");
    {
      Accelerator acc(deepspeed(batch));
      EXPECT_THAT(error_of([&] { acc.prepare(classifier::loader(kSamples, 4)); }),
                  AllOf(HasSubstr("train_micro_batch_size_per_gpu is 8"), HasSubstr("batches of 4")));
    }
    {
      Accelerator acc(deepspeed(batch));
      EXPECT_NO_THROW(acc.prepare(classifier::loader(kSamples, 8)));
      // A later (evaluation) loader is not the training one.
      EXPECT_NO_THROW(acc.prepare(classifier::loader(kSamples, 4)));
    }
    const auto optimizer =
        write_config(dir, "optimizer",
                     R"({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW", "params": {"lr": 0.1}}})");
    {
      Accelerator acc(deepspeed(optimizer));
      seed_cpu(7);
      Net net;
      acc.prepare(net);
      auto wrong = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(0.01));
      EXPECT_THAT(error_of([&] { acc.prepare(wrong); }), AllOf(HasSubstr("lr is 0.1"), HasSubstr("has 0.01")));
      auto right = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(0.1));
      EXPECT_NO_THROW(acc.prepare(right));
    }
  });
}

// Width 32 in every layer but the ends: its hidden size, while its largest
// size is the output's 100.
struct WideNetImpl : torch::nn::Module {
  WideNetImpl() {
    register_module("in", torch::nn::Linear(6, 32));
    register_module("mid", torch::nn::Linear(32, 32));
    register_module("out", torch::nn::Linear(32, 100));
  }
};
TORCH_MODULE(WideNet);

TEST(DeepSpeedConfig, ReduceBucketSizeAutoIsTheModelsHiddenSizeSquared) {
  // Accelerate's _prepare_deepspeed: reduce_bucket_size "auto" =
  // hidden_size * hidden_size, the model's hidden size found at prepare().
  run_distributed(2, [] {
    const TempDir dir("deepspeed_bucket");
    const auto file =
        write_config(dir, "bucket", R"({"zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"}})");
    {
      Accelerator acc(deepspeed(file));
      seed_cpu(7);
      WideNet net;
      auto opt = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-2));
      auto [model, optimizer] = acc.prepare(net, opt);
      auto* engine = dynamic_cast<zero::ZeroEngine*>(optimizer->tensors());
      ASSERT_NE(engine, nullptr);
      EXPECT_EQ(engine->options().reduce_bucket_size(), 32 * 32);
    }
    {
      // No parameters, no hidden size: "auto" cannot be filled and the error says which key.
      Accelerator acc(deepspeed(file));
      EXPECT_THAT(error_of([&] { acc.prepare(torch::nn::Sequential()); }),
                  AllOf(HasSubstr("zero_optimization.reduce_bucket_size is \"auto\""), HasSubstr("no parameters"),
                        HasSubstr("give an integer in place of \"auto\"")));
    }
  });
}

TEST(DeepSpeedConfig, AccelerateZero2And3ExampleConfigsTrainLikeDdpWithTheirSettings) {
  // Accelerate's two ZeRO-2 templates and its ZeRO-3 one, as they are (fp16 on, "auto"
  // clipping = 1.0, batch sizes and bucket "auto"; the second offloads the
  // optimizer to the CPU), given through the launcher's variables on 2
  // ranks: the same parameters as DDP with what they say (fp16, clip 1.0).
  // (That the file's clipping acts is GradientClippingClipsEveryStep...'s
  // test; AdamW here barely feels a clip.)
  run_distributed(2, [] {
    auto adamw_run = [](AcceleratorOptions options, bool clip) {
      Accelerator acc(std::move(options));
      seed_cpu(7);
      Net net;
      auto opt = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-2));
      auto [model, optimizer, data] = acc.prepare(net, opt, classifier::loader(kSamples, 4));
      for (auto& b : data) {
        acc.backward(F::cross_entropy(model(b["x"]), b["y"]));
        if (clip) acc.clip_grad_norm_(net->parameters(), 1.0);
        optimizer->step();
        optimizer->zero_grad();
      }
      EXPECT_EQ(acc.mixed_precision(), MixedPrecision::fp16);
      // Through get_state_dict: under ZeRO-3 the parameters hold no data outside forward.
      std::vector<torch::Tensor> params;
      for (auto& [name, t] : acc.get_state_dict(model)) params.push_back(t.detach().clone());
      return std::pair{params, optimizer->tensors() != nullptr};
    };
    const auto [ddp, ddp_engine] = adamw_run(AcceleratorOptions().mixed_precision("fp16"), true);
    EXPECT_FALSE(ddp_engine);
    // zero3.json shards the parameters too (the classifier has no units:
    // they all belong to the root unit).
    for (const char* name : {"zero2.json", "zero2_offload.json", "zero3.json"}) {
      const auto [zero, engine] =
          adamw_run(deepspeed(accel::testing::source_path(std::string("tests/data/deepspeed/") + name)), false);
      EXPECT_TRUE(engine) << name;
      EXPECT_LT(max_diff(zero, ddp), 1e-5) << name;
    }
  });
}
