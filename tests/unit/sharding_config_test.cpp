// DeepSpeed JSON and launcher variables -> ShardingConfig, with Accelerate's
// rules: the ZeRO-2 configs of Accelerate's examples (tests/data/deepspeed,
// same keys and values) parse to the right options; "auto" values take the
// Accelerator's settings; explicit values that disagree with the
// Accelerator's are errors naming both; bad values are named; the
// ACCELERATE_DEEPSPEED_* / FSDP_* variables map as Accelerate reads them.
#include <fstream>
#include <stdexcept>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/parallel/sharding_config.h"
#include "accel_test_paths.h"
#include "support/errors.h"

namespace {

using accel::BackwardPrefetch;
using accel::MixedPrecision;
using accel::OffloadDevice;
using accel::ShardingConfig;
using accel::ShardingConfigContext;
using accel::ShardingStrategy;
using accel::StateDictType;
using accel::testing::expect_error;

std::string fixture(const std::string& name) { return std::string(ACCEL_SOURCE_DIR) + "/tests/data/deepspeed/" + name; }

ShardingConfig parse(const std::string& text, ShardingConfigContext ctx = {}) {
  return accel::parse_deepspeed_config(text, "ds.json", ctx);
}

void expect_parse_error(const std::string& text, std::initializer_list<std::string> parts,
                        ShardingConfigContext ctx = {}) {
  expect_error<std::invalid_argument>([&] { parse(text, ctx); }, parts);
}

TEST(ShardingConfig, AccelerateZero2Example) {
  ShardingConfigContext ctx;
  ctx.mixed_precision = MixedPrecision::fp16;
  ctx.world_size = 2;
  auto c = accel::load_deepspeed_config(fixture("zero2.json"), ctx);
  ASSERT_TRUE(c.sharding);
  EXPECT_EQ(c.sharding->strategy(), ShardingStrategy::shard_grad_op);
  EXPECT_EQ(c.sharding->offload_optimizer().device(), OffloadDevice::none);
  // "auto" without a hidden size: left to the model prepared (DeepSpeed's default until then).
  EXPECT_TRUE(c.reduce_bucket_size_from_model);
  EXPECT_EQ(c.sharding->reduce_bucket_size(), 500'000'000);
  EXPECT_TRUE(c.sharding->overlap_comm());
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.gradient_clipping, 1.0);  // "auto": Accelerate fills 1.0
  EXPECT_FALSE(c.train_micro_batch_size_per_gpu);
  EXPECT_FALSE(c.train_batch_size);
  EXPECT_EQ(c.mixed_precision, MixedPrecision::fp16);
  ASSERT_TRUE(c.scaler);
  EXPECT_EQ(c.scaler->init_scale(), 65536.0);
  EXPECT_EQ(c.scaler->growth_interval(), 1000);
  EXPECT_EQ(c.scaler->growth_factor(), 2.0);
  EXPECT_EQ(c.scaler->backoff_factor(), 0.5);
  EXPECT_EQ(c.scaler->hysteresis(), 2);
  EXPECT_EQ(c.scaler->min_scale(), 1.0);
  ASSERT_TRUE(c.optimizer);
  EXPECT_EQ(c.optimizer->type, "AdamW");
  EXPECT_TRUE(c.optimizer->decoupled);
  EXPECT_TRUE(c.optimizer->params.empty());  // all "auto"
  EXPECT_EQ(c.source, fixture("zero2.json"));
}

TEST(ShardingConfig, AccelerateZero2OffloadExample) {
  auto c = accel::load_deepspeed_config(fixture("zero2_offload.json"));
  ASSERT_TRUE(c.sharding);
  EXPECT_EQ(c.sharding->strategy(), ShardingStrategy::shard_grad_op);
  EXPECT_EQ(c.sharding->offload_optimizer().device(), OffloadDevice::cpu);
  EXPECT_TRUE(c.sharding->offload_optimizer().pin_memory());
  // fp16 enabled in the file and no mixed precision asked of the Accelerator: the file decides.
  EXPECT_EQ(c.mixed_precision, MixedPrecision::fp16);
}

TEST(ShardingConfig, StagesAndOffload) {
  EXPECT_EQ(parse(R"({"zero_optimization": {"stage": 0}})").sharding->strategy(), ShardingStrategy::no_shard);
  EXPECT_EQ(parse(R"({"zero_optimization": {"stage": 1}})").sharding->strategy(), ShardingStrategy::shard_optimizer);
  EXPECT_EQ(parse(R"({"zero_optimization": {}})").sharding->strategy(), ShardingStrategy::no_shard);  // DeepSpeed's 0
  // Stage 3: parameter sharding at every unit, prefetching the next unit
  // (a prefetch bucket above 0) within the live bound.
  auto three = parse(R"({"zero_optimization": {"stage": 3, "stage3_prefetch_bucket_size": 5e7,
      "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 3e8,
      "stage3_gather_16bit_weights_on_model_save": true}})");
  EXPECT_EQ(three.sharding->strategy(), ShardingStrategy::full_shard);
  EXPECT_TRUE(three.sharding->transformer_cls_to_wrap().empty());
  EXPECT_TRUE(three.sharding->forward_prefetch());
  EXPECT_EQ(three.sharding->backward_prefetch(), BackwardPrefetch::backward_pre);
  EXPECT_EQ(three.sharding->max_live_parameters(), 300'000'000);
  // DeepSpeed's defaults (bucket 5e7, live 1e9), "auto" (filled from the model, never 0), and a bucket of 0.
  for (const char* config : {R"({"zero_optimization": {"stage": 3}})",
                             R"({"zero_optimization": {"stage": 3, "stage3_prefetch_bucket_size": "auto"}})"}) {
    auto d = parse(config);
    EXPECT_TRUE(d.sharding->forward_prefetch()) << config;
    EXPECT_EQ(d.sharding->backward_prefetch(), BackwardPrefetch::backward_pre) << config;
    EXPECT_EQ(d.sharding->max_live_parameters(), 1'000'000'000) << config;
  }
  auto off = parse(R"({"zero_optimization": {"stage": 3, "stage3_prefetch_bucket_size": 0}})");
  EXPECT_FALSE(off.sharding->forward_prefetch());
  EXPECT_EQ(off.sharding->backward_prefetch(), BackwardPrefetch::none);
  // Below stage 3 nothing is gathered, so nothing is prefetched.
  EXPECT_FALSE(parse(R"({"zero_optimization": {"stage": 2}})").sharding->forward_prefetch());
  expect_parse_error(R"({"zero_optimization": {"stage": 3, "stage3_max_live_parameters": -1}})",
                     {"stage3_max_live_parameters = -1"});
  // ZeRO-3 with the optimizer offloaded, then the parameters too.
  auto offloaded = parse(R"({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}})");
  EXPECT_EQ(offloaded.sharding->offload_optimizer().device(), OffloadDevice::cpu);
  EXPECT_EQ(offloaded.sharding->offload_param().device(), OffloadDevice::none);
  offloaded = parse(R"({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"},
      "offload_param": {"device": "cpu", "pin_memory": false}}})");
  EXPECT_EQ(offloaded.sharding->offload_param().device(), OffloadDevice::cpu);
  EXPECT_FALSE(offloaded.sharding->offload_param().pin_memory());
  // ZeRO-Infinity's optimizer state on NVMe under stage 3.
  auto paged = parse(R"({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "nvme", "nvme_path": "/n"},
      "offload_param": {"device": "cpu"}}})");
  EXPECT_EQ(paged.sharding->strategy(), ShardingStrategy::full_shard);
  EXPECT_EQ(paged.sharding->offload_optimizer().device(), OffloadDevice::nvme);
  EXPECT_EQ(paged.sharding->offload_optimizer().nvme_path(), "/n");
  // ZeRO-Infinity's parameter offload: max_in_cpu honoured, DeepSpeed's
  // swap buffer sizes accepted at their defaults only (accel has no such pool).
  auto params = parse(R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/n",
      "buffer_count": 5, "buffer_size": 1e8, "max_in_cpu": 1e6, "pin_memory": false}}})");
  EXPECT_EQ(params.sharding->offload_param().device(), OffloadDevice::nvme);
  EXPECT_EQ(params.sharding->offload_param().nvme_path(), "/n");
  EXPECT_EQ(params.sharding->offload_param().max_in_cpu(), 1'000'000);
  EXPECT_FALSE(params.sharding->offload_param().pin_memory());
  EXPECT_EQ(parse(R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/n"}}})")
                .sharding->offload_param()
                .max_in_cpu(),
            1'000'000'000);  // DeepSpeed's default
  expect_parse_error(R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}}})",
                     {"offload_param.device is \"nvme\" but no nvme_path"});
  expect_parse_error(
      R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/n", "buffer_count": 8}}})",
      {"offload_param.buffer_count = 8", "expected 5", "no pool of swap buffers"});
  expect_parse_error(
      R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/n", "buffer_size": 2e8}}})",
      {"offload_param.buffer_size = 2", "expected 100000000"});
  expect_parse_error(
      R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/n", "max_in_cpu": -1}}})",
      {"offload_param.max_in_cpu = -1", "integer >= 0"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2, "offload_param": {"device": "nvme", "nvme_path": "/n"}}})",
                     {"offload_param.device = \"nvme\"", "parameter offload needs stage 3"});
  // DeepSpeed reads the buffers for nvme only: with cpu they mean nothing there either.
  EXPECT_EQ(parse(R"({"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu", "buffer_count": 8}}})")
                .sharding->offload_param()
                .device(),
            OffloadDevice::cpu);
  expect_parse_error(R"({"zero_optimization": {"stage": 4}})", {"zero_optimization.stage = 4", "0, 1, 2 or 3"});
  expect_parse_error(R"({"zero_optimization": {"stage": "two"}})", {"zero_optimization.stage = \"two\"", "integer"});
  expect_parse_error(R"({"train_batch_size": 8})", {"no zero_optimization section"});

  auto nvme = parse(R"({"zero_optimization": {"stage": 1, "reduce_bucket_size": 5e7, "overlap_comm": false,
      "offload_optimizer": {"device": "nvme", "nvme_path": "/local_nvme", "pin_memory": false}}})");
  EXPECT_EQ(nvme.sharding->offload_optimizer().device(), OffloadDevice::nvme);
  EXPECT_EQ(nvme.sharding->offload_optimizer().nvme_path(), "/local_nvme");
  EXPECT_FALSE(nvme.sharding->offload_optimizer().pin_memory());
  EXPECT_EQ(nvme.sharding->reduce_bucket_size(), 50'000'000);
  EXPECT_FALSE(nvme.sharding->overlap_comm());
  expect_parse_error(R"({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "nvme"}}})",
                     {"\"nvme\" but no nvme_path"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "gpu"}}})",
                     {"offload_optimizer.device = \"gpu\"", "none, cpu, nvme"});
  expect_parse_error(R"({"zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}})",
                     {"offload needs stage 1 or 2"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}})",
                     {"offload_param.device = \"cpu\"", "parameter offload needs stage 3"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2, "reduce_bucket_size": 1.5}})",
                     {"reduce_bucket_size = 1.5", "integer >= 1"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2, "overlap_comm": 3}})",
                     {"overlap_comm = 3", "true or false"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2, "zero_quantized_gradients": true}})",
                     {"zero_quantized_gradients"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2},})", {"ds.json", "not valid JSON"});

  ShardingConfigContext ctx;
  ctx.hidden_size = 1024;
  auto given = parse(R"({"zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"}})", ctx);
  EXPECT_EQ(given.sharding->reduce_bucket_size(), 1024 * 1024);
  EXPECT_FALSE(given.reduce_bucket_size_from_model);
}

// A transformer's shapes: vocabulary 1000, width 32, MLP 128, fused QKV 96.
struct TinyTransformerImpl : torch::nn::Module {
  TinyTransformerImpl() {
    register_module("embed", torch::nn::Embedding(1000, 32));
    register_module("qkv", torch::nn::Linear(32, 96));
    register_module("out", torch::nn::Linear(32, 32));
    register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({32})));
    register_module("up", torch::nn::Linear(32, 128));
    register_module("down", torch::nn::Linear(128, 32));
    register_module("head", torch::nn::Linear(32, 1000));
  }
};
TORCH_MODULE(TinyTransformer);

TEST(ShardingConfig, ModelHiddenSizeIsTheWidthMostParametersShare) {
  // Not the vocabulary (the largest size) nor the MLP's width: the residual width.
  EXPECT_EQ(accel::model_hidden_size(*TinyTransformer()), 32);
  torch::nn::Sequential mlp(torch::nn::Linear(16, 64), torch::nn::Linear(64, 64), torch::nn::Linear(64, 4));
  EXPECT_EQ(accel::model_hidden_size(*mlp), 64);
  // A convolution's kernel dimensions do not count: [8, 8, 3, 3, 3] has more 3s than 8s.
  torch::nn::Sequential conv(torch::nn::Conv3d(torch::nn::Conv3dOptions(8, 8, 3).bias(false)),
                             torch::nn::Conv3d(torch::nn::Conv3dOptions(8, 8, 3).bias(false)));
  EXPECT_EQ(accel::model_hidden_size(*conv), 8);
  // Sizes shared equally often: the larger.
  EXPECT_EQ(accel::model_hidden_size(*torch::nn::Linear(torch::nn::LinearOptions(8, 4).bias(false))), 8);
  EXPECT_FALSE(accel::model_hidden_size(*torch::nn::Sequential()));
}

TEST(ShardingConfig, ReduceBucketSizeAutoIsFilledFromTheModel) {
  const std::string text = R"({"zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"}})";
  auto c = parse(text);
  accel::fill_from_model(c, *TinyTransformer());
  EXPECT_EQ(c.sharding->reduce_bucket_size(), 32 * 32);  // Accelerate: hidden_size * hidden_size
  EXPECT_FALSE(c.reduce_bucket_size_from_model);
  // Filled once: a later model leaves it as the first one set it.
  accel::fill_from_model(c, *torch::nn::Linear(100, 100));
  EXPECT_EQ(c.sharding->reduce_bucket_size(), 32 * 32);
  // An integer in the file is kept.
  auto given = parse(R"({"zero_optimization": {"stage": 2, "reduce_bucket_size": 5e7}})");
  accel::fill_from_model(given, *TinyTransformer());
  EXPECT_EQ(given.sharding->reduce_bucket_size(), 50'000'000);
  // No hidden size to take: the error names the key and the way out.
  auto unfillable = parse(text);
  expect_error([&] { accel::fill_from_model(unfillable, *torch::nn::Sequential()); },
               {"ds.json: zero_optimization.reduce_bucket_size is \"auto\"", "hidden_size * hidden_size",
                "no parameters", "give an integer in place of \"auto\""});
}

TEST(ShardingConfig, AutoValuesTakeTheAcceleratorsSettings) {
  const std::string text = R"({"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": "auto",
      "gradient_clipping": "auto", "fp16": {"enabled": "auto"}, "bf16": {"enabled": "auto"},
      "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto"})";
  ShardingConfigContext ctx;
  ctx.gradient_accumulation_steps = 4;
  ctx.gradient_clipping = 0.5;
  ctx.mixed_precision = MixedPrecision::bf16;
  auto c = parse(text, ctx);
  EXPECT_EQ(c.gradient_accumulation_steps, 4);
  EXPECT_EQ(c.gradient_clipping, 0.5);
  EXPECT_EQ(c.mixed_precision, MixedPrecision::bf16);
  EXPECT_FALSE(c.scaler);

  ctx = {};
  ctx.mixed_precision = MixedPrecision::fp16;
  c = parse(text, ctx);
  EXPECT_FALSE(c.gradient_accumulation_steps);  // nothing given: the Accelerator keeps its own
  EXPECT_EQ(c.gradient_clipping, 1.0);
  EXPECT_EQ(c.mixed_precision, MixedPrecision::fp16);
  ASSERT_TRUE(c.scaler);
  EXPECT_EQ(c.scaler->init_scale(), 65536.0);

  // No precision sections and the Accelerator asks for fp16: Accelerate inserts fp16 enabled.
  c = parse(R"({"zero_optimization": {"stage": 1}})", ctx);
  EXPECT_EQ(c.mixed_precision, MixedPrecision::fp16);
  EXPECT_TRUE(c.scaler);
  // "no" from the launcher (it always sets ACCELERATE_MIXED_PRECISION) leaves the file's choice.
  ctx.mixed_precision = MixedPrecision::no;
  EXPECT_EQ(parse(R"({"zero_optimization": {"stage": 1}, "bf16": {"enabled": true}})", ctx).mixed_precision,
            MixedPrecision::bf16);

  // fp16 scaler keys.
  c = parse(R"({"zero_optimization": {"stage": 1}, "fp16": {"enabled": true, "initial_scale_power": 12,
      "loss_scale_window": 500, "hysteresis": 1, "min_loss_scale": 0.25}})");
  EXPECT_EQ(c.scaler->init_scale(), 4096.0);
  EXPECT_EQ(c.scaler->growth_interval(), 500);
  EXPECT_EQ(c.scaler->hysteresis(), 1);
  EXPECT_EQ(c.scaler->min_scale(), 0.25);
}

TEST(ShardingConfig, ConflictsWithTheAcceleratorNameBoth) {
  ShardingConfigContext ctx;
  ctx.gradient_accumulation_steps = 4;
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 2})",
                     {"gradient_accumulation_steps is 2", "Accelerator's is 4"}, ctx);
  ctx = {};
  ctx.gradient_clipping = 1.0;
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "gradient_clipping": 0.3})",
                     {"gradient_clipping is 0.3", "Accelerator's is 1"}, ctx);
  ctx = {};
  ctx.mixed_precision = MixedPrecision::fp16;
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "bf16": {"enabled": true}})",
                     {"bf16.enabled is true", "mixed_precision is 'fp16'"}, ctx);
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "fp16": {"enabled": false}})",
                     {"fp16.enabled is false", "mixed_precision is 'fp16'"}, ctx);
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "fp16": {"enabled": true}, "bf16": {"enabled": true}})",
                     {"both true"});
  // Equal values are no conflict.
  ctx = {};
  ctx.gradient_accumulation_steps = 2;
  EXPECT_EQ(parse(R"({"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 2})", ctx)
                .gradient_accumulation_steps,
            2);
}

TEST(ShardingConfig, BadValuesAreNamed) {
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 0})",
                     {"gradient_accumulation_steps = 0", "integer >= 1"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "gradient_clipping": -1})",
                     {"gradient_clipping = -1", "number >= 0"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "fp16": {"enabled": true, "loss_scale": 128}})",
                     {"fp16.loss_scale = 128", "static loss scale is not supported"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "fp16": {"enabled": "yes"}})",
                     {"fp16.enabled = \"yes\"", "true or false"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "optimizer": {"type": "Lamb"}})",
                     {"optimizer.type = \"Lamb\"", "Adam or AdamW"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR",
      "params": {"warmup_num_steps": 100}}})",
                     {"scheduler.params.warmup_num_steps = 100", "builds no scheduler"});
  expect_parse_error(R"({"zero_optimization": {"stage": 2}, "train_batch_size": 10,
      "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2})",
                     {"train_batch_size is 10", "2 * 2 * 2 = 8"}, [] {
                       ShardingConfigContext c;
                       c.world_size = 2;
                       return c;
                     }());
  expect_error<std::invalid_argument>([] { accel::load_deepspeed_config("/nonexistent/ds.json"); },
                                      {"/nonexistent/ds.json"});
}

TEST(ShardingConfig, BatchSizesAtPrepare) {
  auto c = parse(R"({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto",
      "train_batch_size": "auto"})");
  accel::check_batch_sizes(c, 8, 2, 4);
  EXPECT_EQ(c.train_micro_batch_size_per_gpu, 8);
  EXPECT_EQ(c.train_batch_size, 64);  // micro * accumulation * world size

  auto d = parse(R"({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 4})");
  expect_error<std::invalid_argument>([&] { accel::check_batch_sizes(d, 8, 1, 2); },
                                      {"train_micro_batch_size_per_gpu is 4", "batches of 8"});
  auto e = parse(R"({"zero_optimization": {"stage": 2}, "train_batch_size": 32})");
  expect_error<std::invalid_argument>([&] { accel::check_batch_sizes(e, 8, 1, 2); },
                                      {"train_batch_size is 32", "= 16"});
}

TEST(ShardingConfig, OptimizerSectionIsCheckedAgainstThePreparedOptimizer) {
  auto w = torch::zeros({2}, torch::requires_grad());
  torch::optim::AdamW adamw({w}, torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
  torch::optim::Adam adam({w}, torch::optim::AdamOptions(1e-3));
  auto c = parse(R"({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW",
      "params": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1}}})");
  accel::check_optimizer(c, adamw);
  expect_error<std::invalid_argument>([&] { accel::check_optimizer(c, adam); }, {"AdamW", "not a torch::optim::AdamW"});
  auto lr = parse(R"({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW", "params": {"lr": 3e-4}}})");
  expect_error<std::invalid_argument>([&] { accel::check_optimizer(lr, adamw); },
                                      {"optimizer.params.lr is 0.0003", "has 0.001"});
  // DeepSpeed's "Adam" is AdamW unless adam_w_mode is false.
  auto ds_adam = parse(R"({"zero_optimization": {"stage": 2}, "optimizer": {"type": "Adam"}})");
  accel::check_optimizer(ds_adam, adamw);
  auto l2 =
      parse(R"({"zero_optimization": {"stage": 2}, "optimizer": {"type": "Adam", "params": {"adam_w_mode": false}}})");
  accel::check_optimizer(l2, adam);
  expect_error<std::invalid_argument>([&] { accel::check_optimizer(l2, adamw); }, {"not a torch::optim::Adam"});
}

accel::EnvLookup env(std::map<std::string, std::string> vars) { return accel::env_from_map(std::move(vars)); }

TEST(ShardingConfig, DeepSpeedVariablesOfTheLauncher) {
  EXPECT_FALSE(accel::sharding_config_from_env(env({})).sharding);
  auto c = accel::sharding_config_from_env(env({{"ACCELERATE_USE_DEEPSPEED", "true"}}));
  ASSERT_TRUE(c.sharding);
  EXPECT_EQ(c.sharding->strategy(), ShardingStrategy::shard_grad_op);  // Accelerate's default stage 2
  EXPECT_FALSE(c.gradient_clipping);
  EXPECT_EQ(c.source, "environment");

  c = accel::sharding_config_from_env(env({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                           {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "1"},
                                           {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "nvme"},
                                           {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_NVME_PATH", "/nvme"},
                                           {"ACCELERATE_GRADIENT_CLIPPING", "0.7"},
                                           {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "3"}}));
  EXPECT_EQ(c.sharding->strategy(), ShardingStrategy::shard_optimizer);
  EXPECT_EQ(c.sharding->offload_optimizer().device(), OffloadDevice::nvme);
  EXPECT_EQ(c.sharding->offload_optimizer().nvme_path(), "/nvme");
  EXPECT_EQ(c.gradient_clipping, 0.7);
  EXPECT_EQ(c.gradient_accumulation_steps, 3);

  EXPECT_EQ(accel::sharding_config_from_env(
                env({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"}}))
                .sharding->strategy(),
            ShardingStrategy::full_shard);
  expect_error<std::invalid_argument>(
      [] {
        accel::sharding_config_from_env(
            env({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "nvme"}}));
      },
      {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_NVME_PATH"});
  expect_error<std::invalid_argument>(
      [] {
        accel::sharding_config_from_env(
            env({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "nvme"}}));
      },
      {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE=nvme", "needs ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_NVME_PATH"});
  expect_error<std::invalid_argument>(
      [] {
        accel::sharding_config_from_env(
            env({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "disk"}}));
      },
      {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE=disk", "none, cpu or nvme"});
  const auto infinity = accel::sharding_config_from_env(env({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                                             {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"},
                                                             {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "nvme"},
                                                             {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_NVME_PATH", "/o"},
                                                             {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "nvme"},
                                                             {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_NVME_PATH", "/p"}}));
  EXPECT_EQ(infinity.sharding->offload_param().device(), OffloadDevice::nvme);
  EXPECT_EQ(infinity.sharding->offload_param().nvme_path(), "/p");
  EXPECT_EQ(infinity.sharding->offload_optimizer().nvme_path(), "/o");
  // Accelerate's default stage is 2: parameter offload needs 3.
  expect_error<std::invalid_argument>(
      [] {
        accel::sharding_config_from_env(
            env({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "cpu"}}));
      },
      {"offload_param.device", "needs stage 3"});
  const auto three = accel::sharding_config_from_env(env({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                                          {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"},
                                                          {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "cpu"},
                                                          {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "cpu"}}));
  EXPECT_EQ(three.sharding->strategy(), ShardingStrategy::full_shard);
  EXPECT_EQ(three.sharding->offload_param().device(), OffloadDevice::cpu);
  EXPECT_EQ(three.sharding->offload_optimizer().device(), OffloadDevice::cpu);
  expect_error<std::invalid_argument>(
      [] {
        accel::sharding_config_from_env(
            env({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "x"}}));
      },
      {"ACCELERATE_DEEPSPEED_ZERO_STAGE"});
  expect_error<std::invalid_argument>(
      [] {
        accel::sharding_config_from_env(env({{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_USE_FSDP", "true"}}));
      },
      {"both true"});
}

TEST(ShardingConfig, DeepSpeedConfigFileFromTheLauncher) {
  // The file's "auto" clipping takes ACCELERATE_GRADIENT_CLIPPING, as Accelerate's plugin fills it.
  auto c = accel::sharding_config_from_env(env({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                                {"ACCELERATE_DEEPSPEED_CONFIG_FILE", fixture("zero2_offload.json")},
                                                {"ACCELERATE_GRADIENT_CLIPPING", "2.5"},
                                                {"ACCELERATE_CONFIG_DS_FIELDS", "deepspeed_config_file"}}));
  EXPECT_EQ(c.sharding->offload_optimizer().device(), OffloadDevice::cpu);
  EXPECT_EQ(c.gradient_clipping, 2.5);
  EXPECT_EQ(c.source, fixture("zero2_offload.json"));
  // Accelerate's rule: keys the file decides must not also come from the accelerate config.
  expect_error<std::invalid_argument>(
      [] {
        accel::sharding_config_from_env(env({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                             {"ACCELERATE_DEEPSPEED_CONFIG_FILE", fixture("zero2.json")},
                                             {"ACCELERATE_CONFIG_DS_FIELDS", "deepspeed_config_file,zero_stage"}}));
      },
      {"deepspeed_config.zero_stage", "zero2.json"});
  // A conflict between the file and the launcher's accumulation steps names both.
  expect_error<std::invalid_argument>(
      [] {
        accel::sharding_config_from_env(env({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                             {"ACCELERATE_DEEPSPEED_CONFIG_FILE", fixture("zero2.json")},
                                             {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4"}}));
      },
      {"gradient_accumulation_steps is 1", "Accelerator's is 4"});
}

TEST(ShardingConfig, FsdpVariablesOfTheLauncher) {
  auto strategy = [](std::map<std::string, std::string> vars) {
    vars["ACCELERATE_USE_FSDP"] = "true";
    return accel::sharding_config_from_env(env(vars)).sharding->strategy();
  };
  EXPECT_EQ(strategy({{"FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP"}}), ShardingStrategy::shard_grad_op);
  EXPECT_EQ(strategy({{"FSDP_SHARDING_STRATEGY", "2"}}), ShardingStrategy::shard_grad_op);
  EXPECT_EQ(strategy({{"FSDP_SHARDING_STRATEGY", "no_shard"}}), ShardingStrategy::no_shard);
  EXPECT_EQ(strategy({{"FSDP_SHARDING_STRATEGY", "3"}}), ShardingStrategy::no_shard);
  EXPECT_EQ(strategy({{"FSDP_VERSION", "2"}, {"FSDP_RESHARD_AFTER_FORWARD", "false"}}),
            ShardingStrategy::shard_grad_op);
  auto offload = accel::sharding_config_from_env(env(
      {{"ACCELERATE_USE_FSDP", "true"}, {"FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP"}, {"FSDP_OFFLOAD_PARAMS", "true"}}));
  EXPECT_EQ(offload.sharding->offload_optimizer().device(), OffloadDevice::cpu);
}

TEST(ShardingConfig, FsdpStateDictTypeFollowsAccelerate) {
  auto type = [](std::map<std::string, std::string> vars) {
    vars["ACCELERATE_USE_FSDP"] = "true";
    return accel::sharding_config_from_env(env(vars)).sharding->state_dict_type();
  };
  // The default depends on the version, as in Accelerate's plugin.
  EXPECT_EQ(type({}), StateDictType::full);
  EXPECT_EQ(type({{"FSDP_VERSION", "2"}}), StateDictType::sharded);
  EXPECT_EQ(type({{"FSDP_STATE_DICT_TYPE", "sharded_state_dict"}}), StateDictType::sharded);
  EXPECT_EQ(type({{"FSDP_VERSION", "2"}, {"FSDP_STATE_DICT_TYPE", "FULL_STATE_DICT"}}), StateDictType::full);
  EXPECT_EQ(type({{"FSDP_STATE_DICT_TYPE", "1"}}), StateDictType::full);
  EXPECT_EQ(type({{"FSDP_STATE_DICT_TYPE", "3"}}), StateDictType::sharded);
  // Version 1's per-rank LOCAL_STATE_DICT is written as the sharded one (which also reshards).
  EXPECT_EQ(type({{"FSDP_STATE_DICT_TYPE", "LOCAL_STATE_DICT"}}), StateDictType::sharded);
  expect_error<std::invalid_argument>(
      [&] {
        type({{"FSDP_VERSION", "2"}, {"FSDP_STATE_DICT_TYPE", "2"}});
      },
      {"FSDP_STATE_DICT_TYPE=2", "FSDP2 has no LOCAL_STATE_DICT"});
  expect_error<std::invalid_argument>(
      [&] {
        type({{"FSDP_STATE_DICT_TYPE", "PARTIAL"}});
      },
      {"FSDP_STATE_DICT_TYPE=PARTIAL", "expected FULL_STATE_DICT"});
  EXPECT_EQ(accel::parse_state_dict_type("sharded_state_dict"), StateDictType::sharded);
  EXPECT_EQ(accel::to_string(StateDictType::full), "FULL_STATE_DICT");
}

TEST(ShardingConfig, FsdpPrefetchFollowsAccelerate) {
  auto options = [](std::map<std::string, std::string> vars) {
    vars["ACCELERATE_USE_FSDP"] = "true";
    return *accel::sharding_config_from_env(env(vars)).sharding;
  };
  // Version 1: none unless asked (Accelerate passes backward_prefetch=None).
  EXPECT_EQ(options({}).backward_prefetch(), accel::BackwardPrefetch::none);
  EXPECT_FALSE(options({}).forward_prefetch());
  EXPECT_EQ(options({{"FSDP_BACKWARD_PREFETCH", "BACKWARD_PRE"}}).backward_prefetch(),
            accel::BackwardPrefetch::backward_pre);
  EXPECT_EQ(options({{"FSDP_BACKWARD_PREFETCH", "backward_post"}}).backward_prefetch(),
            accel::BackwardPrefetch::backward_post);
  EXPECT_EQ(options({{"FSDP_BACKWARD_PREFETCH", "1"}}).backward_prefetch(), accel::BackwardPrefetch::backward_pre);
  EXPECT_EQ(options({{"FSDP_BACKWARD_PREFETCH", "NO_PREFETCH"}}).backward_prefetch(), accel::BackwardPrefetch::none);
  EXPECT_TRUE(options({{"FSDP_FORWARD_PREFETCH", "true"}}).forward_prefetch());
  // Version 2: FSDP2 prefetches backward itself; Accelerate drops the variable.
  EXPECT_EQ(options({{"FSDP_VERSION", "2"}}).backward_prefetch(), accel::BackwardPrefetch::backward_pre);
  EXPECT_EQ(options({{"FSDP_VERSION", "2"}, {"FSDP_BACKWARD_PREFETCH", "NO_PREFETCH"}}).backward_prefetch(),
            accel::BackwardPrefetch::backward_pre);
  expect_error<std::invalid_argument>(
      [&] {
        options({{"FSDP_VERSION", "2"}, {"FSDP_FORWARD_PREFETCH", "true"}});
      },
      {"FSDP_FORWARD_PREFETCH=true", "FSDP_VERSION=2"});
  expect_error<std::invalid_argument>(
      [&] {
        options({{"FSDP_BACKWARD_PREFETCH", "BACKWARD_LATER"}});
      },
      {"FSDP_BACKWARD_PREFETCH=BACKWARD_LATER", "BACKWARD_PRE, BACKWARD_POST"});
  expect_error<std::invalid_argument>(
      [&] {
        options({{"FSDP_BACKWARD_PREFETCH", "3"}});
      },
      {"FSDP_BACKWARD_PREFETCH=3"});
  // Checked as booleans, whatever their effect.
  expect_error<std::invalid_argument>(
      [&] {
        options({{"FSDP_SYNC_MODULE_STATES", "maybe"}});
      },
      {"FSDP_SYNC_MODULE_STATES", "maybe"});
  EXPECT_EQ(accel::to_string(accel::BackwardPrefetch::backward_post), "BACKWARD_POST");
}

TEST(ShardingConfig, FsdpFullShardAndWrapPolicyVariables) {
  auto sharding = [](std::map<std::string, std::string> vars) {
    vars["ACCELERATE_USE_FSDP"] = "true";
    return *accel::sharding_config_from_env(env(vars)).sharding;
  };
  // Accelerate's defaults: FULL_SHARD (v1), reshard after forward (v2), NO_WRAP.
  for (const auto& vars : std::vector<std::map<std::string, std::string>>{
           {}, {{"FSDP_SHARDING_STRATEGY", "1"}}, {{"FSDP_VERSION", "2"}}}) {
    const auto o = sharding(vars);
    EXPECT_EQ(o.strategy(), ShardingStrategy::full_shard);
    EXPECT_EQ(o.auto_wrap_policy(), accel::WrapPolicy::no_wrap);
  }
  auto o = sharding(
      {{"FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP"}, {"FSDP_TRANSFORMER_CLS_TO_WRAP", "GPT2Block, T5Block"}});
  EXPECT_EQ(o.auto_wrap_policy(), accel::WrapPolicy::transformer_based);
  EXPECT_EQ(o.transformer_cls_to_wrap(), (std::vector<std::string>{"GPT2Block", "T5Block"}));
  o = sharding({{"FSDP_AUTO_WRAP_POLICY", "size_based_wrap"}, {"FSDP_MIN_NUM_PARAMS", "2000"}});
  EXPECT_EQ(o.auto_wrap_policy(), accel::WrapPolicy::size_based);
  EXPECT_EQ(o.min_num_params(), 2000);
  // Hybrid: shard in the node, replicate across nodes; _ZERO2 keeps the gathered parameters.
  o = sharding({{"FSDP_SHARDING_STRATEGY", "HYBRID_SHARD"}});
  EXPECT_EQ(o.strategy(), ShardingStrategy::hybrid_shard);
  EXPECT_FALSE(o.reshard_after_forward().keeps_everything());
  EXPECT_EQ(o.hybrid_shard_size(), 0);  // the node's ranks
  o = sharding({{"FSDP_SHARDING_STRATEGY", "5"}});
  EXPECT_EQ(o.strategy(), ShardingStrategy::hybrid_shard);
  EXPECT_TRUE(o.reshard_after_forward().keeps_everything());
  // As in Accelerate, a size policy without a positive minimum wraps nothing.
  EXPECT_EQ(sharding({{"FSDP_AUTO_WRAP_POLICY", "SIZE_BASED_WRAP"}}).auto_wrap_policy(), accel::WrapPolicy::no_wrap);

  auto error = [](std::map<std::string, std::string> vars, std::initializer_list<std::string> parts) {
    vars["ACCELERATE_USE_FSDP"] = "true";
    expect_error<std::invalid_argument>([&] { accel::sharding_config_from_env(env(vars)); }, parts);
  };
  // FSDP's CPU offload: parameters and optimizer.
  for (const auto* strategy : {"1", "HYBRID_SHARD"}) {
    o = sharding({{"FSDP_SHARDING_STRATEGY", strategy}, {"FSDP_OFFLOAD_PARAMS", "true"}});
    EXPECT_EQ(o.offload_param().device(), OffloadDevice::cpu);
    EXPECT_EQ(o.offload_optimizer().device(), OffloadDevice::cpu);
  }
  EXPECT_TRUE(sharding({{"FSDP_ACTIVATION_CHECKPOINTING", "true"}}).activation_checkpointing());
  EXPECT_FALSE(sharding({}).activation_checkpointing());
  // As Accelerate does, checkpointing follows the wrap policy under SHARD_GRAD_OP and NO_SHARD too.
  o = sharding({{"FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP"},
                {"FSDP_ACTIVATION_CHECKPOINTING", "true"},
                {"FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP"},
                {"FSDP_TRANSFORMER_CLS_TO_WRAP", "GPT2Block"}});
  EXPECT_EQ(o.strategy(), ShardingStrategy::shard_grad_op);
  EXPECT_TRUE(o.activation_checkpointing());
  EXPECT_EQ(o.transformer_cls_to_wrap(), (std::vector<std::string>{"GPT2Block"}));
  error({{"FSDP_AUTO_WRAP_POLICY", "LAMBDA_WRAP"}}, {"FSDP_AUTO_WRAP_POLICY=LAMBDA_WRAP", "SIZE_BASED_WRAP"});
  error({{"FSDP_AUTO_WRAP_POLICY", "SIZE_BASED_WRAP"}, {"FSDP_MIN_NUM_PARAMS", "-5"}}, {"FSDP_MIN_NUM_PARAMS=-5"});
  error({{"FSDP_SHARDING_STRATEGY", "7"}}, {"FSDP_SHARDING_STRATEGY=7", "1-5"});
  error({{"FSDP_SHARDING_STRATEGY", "HALF_SHARD"}}, {"FSDP_SHARDING_STRATEGY=HALF_SHARD", "SHARD_GRAD_OP"});
  error({{"FSDP_VERSION", "3"}}, {"FSDP_VERSION=3"});
}

}  // namespace
