// AcceleratorOptions: unset values come from the environment accel launch
// sets; values in code win; contradictions and bad values are named.
#include <gtest/gtest.h>

#include "accel/accelerator_options.h"
#include "support/errors.h"

using namespace accel;
using accel::testing::expect_error;

TEST(AcceleratorOptions, DefaultsWithoutEnvironment) {
  auto r = resolve(AcceleratorOptions().env(env_from_map({})));
  EXPECT_EQ(r.mixed_precision, MixedPrecision::no);
  EXPECT_EQ(r.accumulation.num_steps(), 1);
  EXPECT_FALSE(r.cpu.has_value());
}

TEST(AcceleratorOptions, EnvironmentFillsUnsetValues) {
  auto env = env_from_map({{"ACCELERATE_MIXED_PRECISION", "bf16"},
                           {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4"},
                           {"ACCELERATE_USE_CPU", "true"}});
  auto r = resolve(AcceleratorOptions().env(env));
  EXPECT_EQ(r.mixed_precision, MixedPrecision::bf16);
  EXPECT_EQ(r.accumulation.num_steps(), 4);
  EXPECT_EQ(r.cpu, true);
}

TEST(AcceleratorOptions, CodeWinsOverEnvironment) {
  auto env = env_from_map({{"ACCELERATE_MIXED_PRECISION", "bf16"}, {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4"}});
  auto r = resolve(AcceleratorOptions().env(env).mixed_precision("fp16").gradient_accumulation_steps(2).cpu(false));
  EXPECT_EQ(r.mixed_precision, MixedPrecision::fp16);
  EXPECT_EQ(r.accumulation.num_steps(), 2);
  EXPECT_EQ(r.cpu, false);
  auto p = resolve(AcceleratorOptions().env(env).gradient_accumulation_plugin(
      GradientAccumulationPlugin().num_steps(8).sync_with_dataloader(false)));
  EXPECT_EQ(p.accumulation.num_steps(), 8);
  EXPECT_FALSE(p.accumulation.sync_with_dataloader());
  // Each launcher setting the code overrode is said, naming both values.
  ASSERT_EQ(r.overridden.size(), 2u);
  EXPECT_NE(r.overridden[0].find("'bf16'"), std::string::npos) << r.overridden[0];
  EXPECT_NE(r.overridden[0].find("'fp16'"), std::string::npos) << r.overridden[0];
  EXPECT_NE(r.overridden[1].find("asked for 4 steps"), std::string::npos) << r.overridden[1];
  EXPECT_NE(r.overridden[1].find("sets 2"), std::string::npos) << r.overridden[1];
  ASSERT_EQ(p.overridden.size(), 1u);
  EXPECT_NE(p.overridden[0].find("sets 8"), std::string::npos) << p.overridden[0];
  // Agreeing values, and the launcher's default 'no', are not overrides.
  auto same = resolve(
      AcceleratorOptions()
          .env(env_from_map({{"ACCELERATE_MIXED_PRECISION", "no"}, {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "2"}}))
          .mixed_precision("bf16")
          .gradient_accumulation_steps(2));
  EXPECT_TRUE(same.overridden.empty());
}

TEST(AcceleratorOptions, BadValuesAreNamed) {
  auto expect_refused = [](const AcceleratorOptions& o, const std::string& needle) {
    expect_error([&] { resolve(o); }, {needle});
  };
  expect_refused(AcceleratorOptions().env(env_from_map({{"ACCELERATE_MIXED_PRECISION", "fp12"}})), "fp12");
  expect_refused(AcceleratorOptions().env(env_from_map({{"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "two"}})),
                 "ACCELERATE_GRADIENT_ACCUMULATION_STEPS");
  expect_refused(AcceleratorOptions().env(env_from_map({})).gradient_accumulation_steps(0), "got 0");
  expect_refused(AcceleratorOptions()
                     .env(env_from_map({}))
                     .gradient_accumulation_steps(2)
                     .gradient_accumulation_plugin(GradientAccumulationPlugin()),
                 "not both");
  EXPECT_THROW(AcceleratorOptions().mixed_precision("half"), std::invalid_argument);
}

TEST(GradientState, SyncsEveryNumStepsAndAtTheEndOfTheLoader) {
  GradientState gs(GradientAccumulationPlugin().num_steps(3));
  int loader = 0;
  std::vector<bool> syncs;
  gs.on_pass_begin(&loader);
  for (int i = 0; i < 7; ++i) {
    gs.on_batch(&loader, LoaderProgress{i == 6, 0});
    gs.advance();
    syncs.push_back(gs.sync_gradients());
  }
  gs.on_pass_end(&loader);
  EXPECT_EQ(syncs, (std::vector<bool>{false, false, true, false, false, true, true}));
  EXPECT_FALSE(gs.in_dataloader());
  // The count restarted at the end of the loader.
  gs.advance();
  gs.advance();
  EXPECT_FALSE(gs.sync_gradients());
  gs.advance();
  EXPECT_TRUE(gs.sync_gradients());
  EXPECT_THROW(GradientState(GradientAccumulationPlugin().num_steps(0)), std::invalid_argument);
}

TEST(AcceleratorOptions, ShardingComesFromTheLaunchersVariables) {
  EXPECT_FALSE(resolve(AcceleratorOptions().env(env_from_map({}))).sharding);
  auto ds = resolve(AcceleratorOptions().env(env_from_map(
      {{"ACCELERATE_USE_DEEPSPEED", "true"}, {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "1"}, {"WORLD_SIZE", "2"}})));
  ASSERT_TRUE(ds.sharding);
  EXPECT_EQ(ds.sharding->strategy(), ShardingStrategy::shard_optimizer);
  auto fsdp = resolve(AcceleratorOptions().env(
      env_from_map({{"ACCELERATE_USE_FSDP", "true"}, {"FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP"}})));
  ASSERT_TRUE(fsdp.sharding);
  EXPECT_EQ(fsdp.sharding->strategy(), ShardingStrategy::shard_grad_op);
  // Code wins over the environment.
  auto code = resolve(AcceleratorOptions()
                          .sharding(ShardingOptions().strategy(ShardingStrategy::no_shard))
                          .env(env_from_map({{"ACCELERATE_USE_DEEPSPEED", "true"}})));
  EXPECT_EQ(code.sharding->strategy(), ShardingStrategy::no_shard);
}

TEST(AcceleratorOptions, KeepsTheLaunchersConfigForPrepare) {
  EXPECT_FALSE(resolve(AcceleratorOptions().env(env_from_map({}))).sharding_config);
  auto ds = resolve(AcceleratorOptions().env(env_from_map({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                                           {"ACCELERATE_GRADIENT_CLIPPING", "0.25"},
                                                           {"ACCELERATE_MIXED_PRECISION", "fp16"}})));
  ASSERT_TRUE(ds.sharding_config);
  EXPECT_EQ(ds.sharding_config->source, "environment");
  EXPECT_EQ(ds.sharding_config->gradient_clipping, 0.25);
  ASSERT_TRUE(ds.sharding_config->scaler);
  EXPECT_EQ(ds.sharding_config->scaler->hysteresis(), 2);  // DeepSpeed's defaults
  // Sharding set in code: the environment is not read.
  auto code = resolve(
      AcceleratorOptions().sharding(ShardingOptions()).env(env_from_map({{"ACCELERATE_USE_DEEPSPEED", "true"}})));
  EXPECT_FALSE(code.sharding_config);
}
