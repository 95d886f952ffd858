// TrainingArguments: flags as Python scripts pass them, JSON files, the
// refusal of Transformers arguments accel does not implement, and
// Transformers' __post_init__ rules.
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "accel/trainer/training_arguments.h"
#include "support/temp_dir.h"

using namespace accel;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument)";
}

}  // namespace

TEST(TrainingArguments, DefaultsAreTransformers) {
  TrainingArguments a;
  EXPECT_EQ(a.output_dir(), "trainer_output");
  EXPECT_DOUBLE_EQ(a.learning_rate(), 5e-5);
  EXPECT_DOUBLE_EQ(a.max_grad_norm(), 1.0);
  EXPECT_DOUBLE_EQ(a.num_train_epochs(), 3.0);
  EXPECT_EQ(a.max_steps(), -1);
  EXPECT_EQ(a.per_device_train_batch_size(), 8);
  EXPECT_EQ(a.logging_strategy(), IntervalStrategy::steps);
  EXPECT_EQ(a.save_strategy(), IntervalStrategy::steps);
  EXPECT_EQ(a.eval_strategy(), IntervalStrategy::no);
  EXPECT_DOUBLE_EQ(a.logging_steps(), 500);
  EXPECT_EQ(a.seed(), 42);
  EXPECT_EQ(a.optim(), "adamw_torch_fused");
}

TEST(TrainingArguments, FlagsAsPythonScriptsPassThem) {
  auto a = TrainingArguments::from_flags(
      {"--learning_rate", "3e-4", "--bf16", "--no_dataloader_pin_memory", "--report_to", "tensorboard",
       "--eval_strategy=steps", "--eval_steps", "10", "--lr_scheduler_type", "cosine", "--lr_scheduler_kwargs",
       R"({"num_cycles": 2})", "--logging_first_step", "false", "--save_total_limit", "3", "--output_dir", "/tmp/x"});
  EXPECT_DOUBLE_EQ(a.learning_rate(), 3e-4);
  EXPECT_TRUE(a.bf16());
  EXPECT_FALSE(a.dataloader_pin_memory());
  EXPECT_EQ(a.report_to(), std::vector<std::string>{"tensorboard"});
  EXPECT_EQ(a.eval_strategy(), IntervalStrategy::steps);
  EXPECT_EQ(a.eval_steps(), 10.0);
  EXPECT_EQ(a.lr_scheduler_type(), "cosine");
  EXPECT_EQ(a.lr_scheduler_kwargs().num_cycles(), 2.0);
  EXPECT_FALSE(a.logging_first_step());
  EXPECT_EQ(a.save_total_limit(), 3);
  EXPECT_EQ(a.output_dir(), "/tmp/x");
}

TEST(TrainingArguments, UnknownAndBadFlagsAreNamed) {
  EXPECT_THAT(error_of([] {
                TrainingArguments::from_flags({"--learning_rat", "1"});
              }),
              AllOf(HasSubstr("unknown argument"), HasSubstr("learning_rat")));
  EXPECT_THAT(error_of([] {
                TrainingArguments::from_flags({"--max_steps", "ten"});
              }),
              AllOf(HasSubstr("max_steps"), HasSubstr("ten"), HasSubstr("integer")));
  EXPECT_THAT(error_of([] {
                TrainingArguments::from_flags({"--eval_strategy", "sometimes"});
              }),
              AllOf(HasSubstr("eval_strategy"), HasSubstr("sometimes"), HasSubstr("no, steps, epoch")));
  EXPECT_THAT(error_of([] { TrainingArguments::from_flags({"--learning_rate"}); }),
              AllOf(HasSubstr("learning_rate"), HasSubstr("needs a value")));
  EXPECT_THAT(error_of([] { TrainingArguments::from_flags({"learning_rate", "1"}); }), HasSubstr("not a flag"));
  EXPECT_THAT(error_of([] {
                TrainingArguments::from_flags({"--lr_scheduler_kwargs", R"({"cycles": 2})"});
              }),
              AllOf(HasSubstr("lr_scheduler_kwargs"), HasSubstr("cycles")));
}

TEST(TrainingArguments, UnimplementedTransformersArgumentsAreRefusedByName) {
  EXPECT_THAT(error_of([] { TrainingArguments::from_flags({"--use_liger_kernel"}); }),
              AllOf(HasSubstr("use_liger_kernel"), HasSubstr("not supported")));
  EXPECT_THAT(error_of([] {
                TrainingArguments::from_flags({"--torch_empty_cache_steps", "5"});
              }),
              AllOf(HasSubstr("torch_empty_cache_steps"), HasSubstr("5")));
  EXPECT_THAT(error_of([] { TrainingArguments::from_json(R"({"deepspeed": "ds.json"})"); }), HasSubstr("deepspeed"));
  // Their defaults pass: a file written from Python's arguments names them all.
  EXPECT_NO_THROW(TrainingArguments::from_flags({"--use_liger_kernel", "false", "--ddp_timeout", "1800"}));
  EXPECT_NO_THROW(TrainingArguments::from_json(R"({"fsdp": null, "debug": [], "disable_tqdm": false})"));
  // Every listed name is refused when set to something else.
  for (const auto& [name, dflt] : refused_training_arguments()) {
    const std::string other = dflt == "true" ? "false" : dflt == "false" ? "true" : "\"something else\"";
    EXPECT_THAT(error_of([&] { TrainingArguments::from_json("{\"" + name + "\": " + other + "}"); }), HasSubstr(name));
  }
}

TEST(TrainingArguments, JsonRoundTripsAndChecksTypes) {
  auto a = TrainingArguments()
               .learning_rate(1e-3)
               .eval_strategy(IntervalStrategy::epoch)
               .metric_for_best_model("accuracy")
               .report_to({"tensorboard"})
               .lr_scheduler_kwargs(SchedulerKwargs().power(2.0))
               .data_seed(7);
  const auto b = TrainingArguments::from_json(a.to_json_string());
  EXPECT_EQ(a.to_json_string(), b.to_json_string());
  EXPECT_EQ(b.data_seed(), 7);
  EXPECT_EQ(b.lr_scheduler_kwargs().power(), 2.0);
  EXPECT_THAT(error_of([] { TrainingArguments::from_json(R"({"max_steps": "10"})"); }),
              AllOf(HasSubstr("max_steps"), HasSubstr("integer")));
  EXPECT_THAT(error_of([] { TrainingArguments::from_json(R"({"bf16": 1})"); }), HasSubstr("bf16"));
  EXPECT_THAT(error_of([] { TrainingArguments::from_json(R"({"no_such": 1})"); }), HasSubstr("no_such"));
  EXPECT_THAT(error_of([] { TrainingArguments::from_json("[1]"); }), HasSubstr("JSON object"));
}

TEST(TrainingArguments, ResolvedAppliesTransformersRules) {
  auto r = TrainingArguments().eval_strategy(IntervalStrategy::steps).logging_steps(25).resolved();
  EXPECT_EQ(r.eval_steps(), 25.0);  // eval_steps defaults to logging_steps
  r = TrainingArguments()
          .eval_strategy(IntervalStrategy::steps)
          .eval_steps(10)
          .save_steps(30)
          .load_best_model_at_end(true)
          .resolved();
  EXPECT_EQ(r.metric_for_best_model(), "loss");
  EXPECT_EQ(r.greater_is_better(), false);
  EXPECT_EQ(r.best_metric_key(), "eval_loss");
  EXPECT_EQ(TrainingArguments().metric_for_best_model("accuracy").resolved().greater_is_better(), true);
  EXPECT_THAT(error_of([] {
                TrainingArguments().eval_strategy(IntervalStrategy::epoch).load_best_model_at_end(true).resolved();
              }),
              AllOf(HasSubstr("load_best_model_at_end"), HasSubstr("epoch"), HasSubstr("steps")));
  EXPECT_THAT(error_of([] {
                TrainingArguments()
                    .eval_strategy(IntervalStrategy::steps)
                    .eval_steps(3)
                    .save_steps(4)
                    .load_best_model_at_end(true)
                    .resolved();
              }),
              AllOf(HasSubstr("multiple"), HasSubstr("4"), HasSubstr("3")));
  EXPECT_THAT(error_of([] { TrainingArguments().fp16(true).bf16(true).resolved(); }), HasSubstr("fp16"));
  EXPECT_THAT(error_of([] { TrainingArguments().logging_steps(2.5).resolved(); }), HasSubstr("logging_steps"));
  EXPECT_THAT(error_of([] { TrainingArguments().optim("adafactor").resolved(); }), HasSubstr("adafactor"));
  EXPECT_THAT(error_of([] { TrainingArguments().lr_scheduler_type("nope").resolved(); }), HasSubstr("nope"));
  EXPECT_THAT(error_of([] { TrainingArguments().dataloader_prefetch_factor(2).resolved(); }),
              HasSubstr("dataloader_prefetch_factor"));
}

TEST(TrainingArguments, WarmupStepsCountOrRatio) {
  EXPECT_EQ(TrainingArguments().warmup_steps(5).get_warmup_steps(100), 5);
  EXPECT_EQ(TrainingArguments().warmup_steps(0.1).get_warmup_steps(95), 10);  // ceil(9.5)
  EXPECT_EQ(TrainingArguments().warmup_ratio(0.25).get_warmup_steps(10), 3);  // ceil(2.5)
  EXPECT_EQ(TrainingArguments().get_warmup_steps(10), 0);
}

// The loss and evaluation arguments that were refused before accel
// implemented them: their values, Transformers' boolean spelling of
// include_num_input_tokens_seen, and bad values named.
TEST(TrainingArguments, LossAndEvaluationExtras) {
  const auto a =
      TrainingArguments::from_flags({"--label_smoothing_factor", "0.1", "--eval_on_start", "--eval_accumulation_steps",
                                     "3", "--include_num_input_tokens_seen", "non_padding"})
          .resolved();
  EXPECT_DOUBLE_EQ(a.label_smoothing_factor(), 0.1);
  EXPECT_TRUE(a.eval_on_start());
  EXPECT_EQ(a.eval_accumulation_steps(), 3);
  EXPECT_EQ(a.include_num_input_tokens_seen(), "non_padding");
  EXPECT_EQ(TrainingArguments::from_json(R"({"include_num_input_tokens_seen": true})").include_num_input_tokens_seen(),
            "all");
  EXPECT_EQ(TrainingArguments::from_json(R"({"include_num_input_tokens_seen": false})").include_num_input_tokens_seen(),
            "no");
  EXPECT_EQ(TrainingArguments::from_json(a.to_json_string()).include_num_input_tokens_seen(), "non_padding");
  EXPECT_THAT(error_of([] { TrainingArguments().include_num_input_tokens_seen("some").resolved(); }),
              AllOf(HasSubstr("include_num_input_tokens_seen"), HasSubstr("some"), HasSubstr("non_padding")));
  EXPECT_THAT(error_of([] { TrainingArguments().label_smoothing_factor(1.5).resolved(); }),
              AllOf(HasSubstr("label_smoothing_factor"), HasSubstr("1.5")));
  EXPECT_THAT(error_of([] { TrainingArguments().eval_accumulation_steps(0).resolved(); }),
              HasSubstr("eval_accumulation_steps"));
}

// gradient_checkpointing is Transformers' deprecated alias: it counts only
// when activation_checkpointing is unset, and both agree once resolved.
TEST(TrainingArguments, GradientCheckpointingIsAnAlias) {
  const auto old_name = TrainingArguments::from_json(R"({"gradient_checkpointing": true})").resolved();
  EXPECT_EQ(old_name.activation_checkpointing(), true);
  EXPECT_EQ(old_name.gradient_checkpointing(), true);
  const auto both =
      TrainingArguments::from_json(R"({"activation_checkpointing": false, "gradient_checkpointing": true})").resolved();
  EXPECT_EQ(both.activation_checkpointing(), false);
  EXPECT_EQ(both.gradient_checkpointing(), false);
  const auto neither = TrainingArguments().resolved();
  EXPECT_EQ(neither.activation_checkpointing(), false);
  EXPECT_THAT(error_of([] { TrainingArguments::from_json(R"({"gradient_checkpointing_kwargs": {"a": 1}})"); }),
              HasSubstr("gradient_checkpointing_kwargs"));
}

TEST(TrainingArguments, AcceleratorConfigAsTransformersTakesIt) {
  // As Python's to_json_string() writes it (every key), as a flag's JSON
  // text, and as a flag naming a JSON file.
  auto a = TrainingArguments::from_json(
      R"({"accelerator_config": {"split_batches": true, "dispatch_batches": null, "even_batches": false,
          "use_seedable_sampler": true, "non_blocking": true, "gradient_accumulation_kwargs": null}})");
  EXPECT_TRUE(a.accelerator_config().split_batches());
  EXPECT_FALSE(a.accelerator_config().dispatch_batches().has_value());
  EXPECT_FALSE(a.accelerator_config().even_batches());
  EXPECT_TRUE(a.accelerator_config().non_blocking());
  EXPECT_EQ(TrainingArguments::from_json(a.to_json_string()).to_json_string(), a.to_json_string());
  a = TrainingArguments::from_flags({"--accelerator_config", R"({"dispatch_batches": false})"});
  EXPECT_EQ(a.accelerator_config().dispatch_batches(), std::optional<bool>(false));
  EXPECT_TRUE(a.accelerator_config().even_batches());
  const accel::testing::TempDir dir("accelerator_config");
  std::ofstream(dir / "acc.json") << R"({"split_batches": true})";
  a = TrainingArguments::from_flags({"--accelerator_config", (dir / "acc.json").string()});
  EXPECT_TRUE(a.accelerator_config().split_batches());
  EXPECT_FALSE(TrainingArguments::from_json(R"({"accelerator_config": null})").accelerator_config().split_batches());
  // What accel cannot honour, and bad input, named.
  EXPECT_THAT(
      error_of([] { TrainingArguments::from_json(R"({"accelerator_config": {"use_seedable_sampler": false}})"); }),
      AllOf(HasSubstr("accelerator_config.use_seedable_sampler"), HasSubstr("seed")));
  EXPECT_THAT(error_of([] {
                TrainingArguments::from_json(R"({"accelerator_config": {"gradient_accumulation_kwargs": {"x": 1}}})");
              }),
              HasSubstr("gradient_accumulation_kwargs"));
  EXPECT_THAT(error_of([] { TrainingArguments::from_json(R"({"accelerator_config": {"split": true}})"); }),
              AllOf(HasSubstr("'split'"), HasSubstr("split_batches")));
  EXPECT_THAT(error_of([] { TrainingArguments::from_json(R"({"accelerator_config": {"even_batches": 1}})"); }),
              HasSubstr("accelerator_config.even_batches"));
  EXPECT_THAT(error_of([&] {
                TrainingArguments::from_flags({"--accelerator_config", (dir / "none.json").string()});
              }),
              AllOf(HasSubstr("none.json"), HasSubstr("readable JSON file")));
  // Python writes hub_token as a placeholder whether it is set or not.
  EXPECT_NO_THROW(TrainingArguments::from_json(R"({"hub_token": "<HUB_TOKEN>"})"));
  EXPECT_THAT(error_of([] { TrainingArguments::from_json(R"({"hub_token": "hf_abc"})"); }), HasSubstr("hub_token"));
}
