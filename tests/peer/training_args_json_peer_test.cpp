// The entries Transformers' TrainingArguments.to_json_string() writes for
// train_sampling_strategy, length_column_name, neftune_noise_alpha,
// auto_find_batch_size, torch_compile and accelerator_config set (and what
// Python's __post_init__ adds for them: torch_compile_backend "inductor")
// load into accel's TrainingArguments with the same values, and resolve;
// and so does the whole JSON, every argument spelled out.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "accel/trainer/training_arguments.h"
#include "support/peers.h"
#include "support/temp_dir.h"

using namespace accel;

TEST(TrainingArgumentsPeer, PythonsJsonWithTheNewArgumentsLoads) {
  REQUIRE_PEERS("torch", "transformers");
  accel::testing::TempDir dir("training_args_json_peer");
  const auto py = accel::testing::run_peer_script("training_args_json.py", {dir.path().string()});
  const auto& changed = py.at("changed");
  ASSERT_EQ(changed.at("torch_compile_backend"), "inductor");
  ASSERT_EQ(changed.size(), 7u) << changed.dump();
  for (const auto* json : {&changed, &py.at("whole")}) {
    const auto a = TrainingArguments::from_json(json->dump());
    EXPECT_EQ(a.train_sampling_strategy(), "group_by_length");
    EXPECT_EQ(a.length_column_name(), "n_tokens");
    EXPECT_EQ(a.neftune_noise_alpha(), 5.0);
    EXPECT_TRUE(a.auto_find_batch_size());
    EXPECT_TRUE(a.torch_compile());
    EXPECT_TRUE(a.accelerator_config().split_batches());
    EXPECT_FALSE(a.accelerator_config().even_batches());
    EXPECT_EQ(a.use_cpu(), json == &py.at("whole"));  // use_cpu=True is in both runs, so only the whole JSON has it
    EXPECT_NO_THROW(a.resolved());
  }
}
