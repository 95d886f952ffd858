// accel::Trainer in one process: exact resume, callbacks that stop training
// or force saves, early stopping, the weight-decay rule, and bad input.
// (The loop's numbers against Transformers' own Trainer: tests/peer/
// trainer_peer_test.cpp.)
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/checkpoint/model_files.h"
#include "accel/trainer/trainer.h"
#include "support/errors.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"

using namespace accel;
using accel::testing::error_of;
using accel::testing::TrainerMlp;
using ::testing::AllOf;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

struct Data {
  std::shared_ptr<Dataset<TensorDict>> train, eval;
};

Data make_data() {
  torch::manual_seed(3);
  auto w = torch::randn({8, 4});
  auto x = torch::randn({36, 8}), ex = torch::randn({10, 8});
  return {accel::testing::rows_dataset(x, torch::sin(x.mm(w))),
          accel::testing::rows_dataset(ex, torch::sin(ex.mm(w)) + 0.5 * torch::randn({10, 4}))};
}

TrainerMlp fresh_model(int seed) {
  torch::manual_seed(seed);
  return TrainerMlp();
}

void copy_weights(TrainerMlp& to, TrainerMlp& from) {
  torch::NoGradGuard g;
  auto src = from->named_parameters();
  for (auto& p : to->named_parameters()) p.value().copy_(src[p.key()]);
}

TrainingArguments base_args(const fs::path& out) {
  return TrainingArguments()
      .output_dir(out.string())
      .per_device_train_batch_size(4)
      .per_device_eval_batch_size(4)
      .gradient_accumulation_steps(2)
      .max_steps(8)
      .learning_rate(1e-2)
      .weight_decay(0.05)
      .warmup_steps(2)
      .logging_steps(1)
      .save_steps(4)
      .use_cpu(true);
}

// Stops training at the end of `step`.
struct StopAt : TrainerCallback {
  int64_t step;
  explicit StopAt(int64_t s) : step(s) {}
  void on_step_end(const Args&, TrainerState& s, TrainerControl& c) override {
    if (s.global_step == step) c.should_training_stop = true;
  }
};

std::set<std::string> checkpoints_in(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with("checkpoint-")) out.insert(e.path().filename().string());
  return out;
}

}  // namespace

TEST(Trainer, ResumeContinuesExactly) {
  accel::testing::TempDir dir("trainer_resume");
  const auto data = make_data();
  auto init = fresh_model(1);

  // 8 steps straight.
  auto straight = fresh_model(2);
  copy_weights(straight, init);
  Trainer a(straight, base_args(dir.path() / "a"), data.train, data.eval);
  a.train();

  // 4 steps (mid-epoch: 5 updates per epoch), stopped; the step-4 checkpoint.
  auto first = fresh_model(3);
  copy_weights(first, init);
  Trainer b(first, base_args(dir.path() / "b"), data.train, data.eval, {}, {std::make_shared<StopAt>(4)});
  b.train();
  ASSERT_EQ(b.state().global_step, 4);
  ASSERT_TRUE(fs::exists(dir.path() / "b" / "checkpoint-4" / "trainer_state.json"));

  // A new model and Trainer resume from it (other initial weights: all must
  // come from the checkpoint).
  torch::manual_seed(99);
  auto resumed = fresh_model(4);
  Trainer c(resumed, base_args(dir.path() / "b"), data.train, data.eval);
  c.train("last");  // the newest checkpoint of output_dir: checkpoint-4
  EXPECT_EQ(c.state().global_step, 8);

  for (const auto& p : straight->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), resumed->named_parameters()[p.key()])) << p.key();
  // The same history up to the final summaries (whose train_loss covers each run's own steps).
  const auto& ha = a.state().log_history;
  const auto& hc = c.state().log_history;
  ASSERT_EQ(ha.size(), hc.size());
  for (size_t i = 0; i + 1 < ha.size(); ++i) EXPECT_EQ(ha[i], hc[i]) << "entry " << i;
  EXPECT_EQ(ha.back().count("train_loss"), 1u);
  EXPECT_EQ(hc.back().count("train_loss"), 1u);
}

TEST(Trainer, CallbacksStopTrainingAndForceSaves) {
  accel::testing::TempDir dir("trainer_callbacks");
  const auto data = make_data();
  struct SaveAt3 : TrainerCallback {
    void on_step_end(const Args&, TrainerState& s, TrainerControl& c) override {
      if (s.global_step == 3) c.should_save = true;
    }
  };
  struct Count : TrainerCallback {
    int begins = 0, ends = 0, substeps = 0, saves = 0, logs = 0, train_end = 0;
    void on_step_begin(const Args&, TrainerState&, TrainerControl&) override { ++begins; }
    void on_step_end(const Args&, TrainerState&, TrainerControl&) override { ++ends; }
    void on_substep_end(const Args&, TrainerState&, TrainerControl&) override { ++substeps; }
    void on_save(const Args&, TrainerState&, TrainerControl&) override { ++saves; }
    void on_log(const Args&, TrainerState&, TrainerControl&, const Metrics&) override { ++logs; }
    void on_train_end(const Args&, TrainerState&, TrainerControl&) override { ++train_end; }
  };
  auto count = std::make_shared<Count>();
  auto model = fresh_model(1);
  Trainer t(model, base_args(dir.path()).save_strategy(IntervalStrategy::no).max_steps(20), data.train, nullptr, {},
            {std::make_shared<SaveAt3>(), std::make_shared<StopAt>(5), count});
  t.train();
  EXPECT_EQ(t.state().global_step, 5);
  EXPECT_EQ(checkpoints_in(dir.path()), std::set<std::string>{"checkpoint-3"});
  EXPECT_EQ(count->begins, 5);
  EXPECT_EQ(count->ends, 5);
  // 9 batches an epoch with GA 2: four updates of 2 batches (one substep
  // each), then the epoch's short last update of 1 batch (none).
  EXPECT_EQ(count->substeps, 4);
  EXPECT_EQ(count->saves, 1);
  EXPECT_EQ(count->logs, 6);  // 5 steps and the summary
  EXPECT_EQ(count->train_end, 1);
  const auto state = TrainerState::load(dir.path() / "checkpoint-3" / "trainer_state.json");
  EXPECT_EQ(state.global_step, 3);
  EXPECT_EQ(state.log_history.size(), 3u);
  EXPECT_EQ(state.max_steps, 20);
}

TEST(Trainer, EarlyStoppingStopsWhereTheEvalLossesSay) {
  accel::testing::TempDir dir("trainer_early");
  const auto data = make_data();
  auto model = fresh_model(1);
  auto args = base_args(dir.path())
                  .max_steps(40)
                  .learning_rate(0.3)
                  .eval_strategy(IntervalStrategy::steps)
                  .eval_steps(1)
                  .save_strategy(IntervalStrategy::no)
                  .metric_for_best_model("loss");
  Trainer t(model, args, data.train, data.eval, {}, {std::make_shared<EarlyStoppingCallback>(2)});
  t.train();
  // Replay the rule on the logged eval losses: stop at the second
  // evaluation in a row that is not strictly below the best so far.
  std::optional<double> best;
  int64_t counter = 0, expected_stop = -1;
  for (const auto& e : t.state().log_history) {
    auto it = e.find("eval_loss");
    if (it == e.end()) continue;
    counter = (!best || it->second < *best) ? 0 : counter + 1;
    if (!best || it->second < *best) best = it->second;
    if (counter >= 2) {
      expected_stop = static_cast<int64_t>(e.at("step"));
      break;
    }
  }
  ASSERT_GT(expected_stop, 0) << "the eval loss never stalled; the test needs a run where it does";
  EXPECT_EQ(t.state().global_step, expected_stop);
  EXPECT_LT(t.state().global_step, 40);
}

TEST(Trainer, WeightDecaySkipsBiasesAndNorms) {
  auto model = fresh_model(1);
  EXPECT_EQ(decay_parameter_names(*model), (std::vector<std::string>{"fc1.weight", "fc2.weight"}));
  struct Named : torch::nn::Module {
    Named() {
      register_parameter("w", torch::ones({1}));
      auto sub = std::make_shared<torch::nn::Module>();
      sub->register_parameter("scale", torch::ones({1}));
      register_module("final_norm", sub);
      register_parameter("RMSNorm_w", torch::ones({1}));
      register_parameter("normal", torch::ones({1}));
    }
  };
  Named n;
  EXPECT_EQ(decay_parameter_names(n), (std::vector<std::string>{"w", "normal"}));  // not final_norm.scale, RMSNorm_w
}

TEST(Trainer, BadInputIsNamed) {
  accel::testing::TempDir dir("trainer_bad");
  const auto data = make_data();
  {
    auto model = fresh_model(1);
    auto args = base_args(dir.path() / "m")
                    .eval_strategy(IntervalStrategy::steps)
                    .eval_steps(2)
                    .save_strategy(IntervalStrategy::no)
                    .metric_for_best_model("accuracy");
    Trainer t(model, args, data.train, data.eval);
    EXPECT_THAT(error_of([&] { t.train(); }),
                AllOf(HasSubstr("metric_for_best_model"), HasSubstr("eval_accuracy"), HasSubstr("eval_loss")));
  }
  {
    fs::create_directories(dir.path() / "not_a_checkpoint");
    std::ofstream(dir.path() / "not_a_checkpoint" / "model.safetensors") << "x";
    auto model = fresh_model(1);
    Trainer t(model, base_args(dir.path() / "r"), data.train);
    EXPECT_THAT(error_of([&] { t.train((dir.path() / "not_a_checkpoint").string()); }),
                AllOf(HasSubstr("not_a_checkpoint"), HasSubstr("not a Trainer checkpoint")));
  }
  {
    auto model = fresh_model(1);
    Trainer t(model, base_args(dir.path() / "empty"), data.train);
    EXPECT_THAT(error_of([&] { t.train("last"); }), HasSubstr("no checkpoint-<step> folder"));
  }
  auto model = fresh_model(1);
  EXPECT_THAT(error_of([&] {
                Trainer(model, base_args(dir.path()).eval_strategy(IntervalStrategy::steps), data.train, nullptr);
              }),
              HasSubstr("needs an eval dataset"));
}

TEST(Trainer, SaveOnlyModelCheckpointsHoldTheModelAndCannotBeResumed) {
  accel::testing::TempDir dir("trainer_only_model");
  const auto data = make_data();
  auto model = fresh_model(1);
  Trainer t(model, base_args(dir.path()).save_only_model(true), data.train);
  t.train();
  const fs::path c4 = dir.path() / "checkpoint-4";
  EXPECT_TRUE(fs::exists(c4 / "model.safetensors"));
  EXPECT_TRUE(fs::exists(c4 / "trainer_state.json"));
  EXPECT_TRUE(fs::exists(c4 / "training_args.json"));
  EXPECT_FALSE(fs::exists(c4 / "accel_state.json"));
  // The saved arguments read back as the same arguments.
  std::ifstream in(c4 / "training_args.json");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(TrainingArguments::from_json(text).to_json_string(), t.args().to_json_string());
  // checkpoint-8, the last, holds the final weights.
  auto again = fresh_model(5);
  ASSERT_TRUE(load_model_weights(*again, dir.path() / "checkpoint-8").ok());
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), again->named_parameters()[p.key()])) << p.key();
  auto other = fresh_model(1);
  Trainer r(other, base_args(dir.path()), data.train);
  EXPECT_THAT(error_of([&] { r.train(c4.string()); }), AllOf(HasSubstr("save_only_model"), HasSubstr("checkpoint-4")));
}

// logging_nan_inf_filter: a NaN micro-batch loss counts as the running mean
// of the losses since the last log (0 at the window's start), as
// Transformers does; unfiltered, the logged loss is NaN. The NaN is added to
// the loss as a constant, so it leaves the gradients (and the training)
// as they were.
TEST(Trainer, NanLossesAreFilteredFromTheLog) {
  accel::testing::TempDir dir("trainer_nan");
  const auto data = make_data();
  const auto run = [&](bool inject, bool filter, int64_t logging_steps) {
    auto model = fresh_model(1);
    auto calls = std::make_shared<int>(0);
    auto fns = ModelFunctions<TrainerMlp>().compute_loss([inject, calls](auto& m, const TensorDict& b) {
      auto loss = m(b);
      return (inject && ++*calls == 3) ? loss + std::nan("") : loss;
    });
    auto args =
        base_args(dir.path() / (std::to_string(inject) + std::to_string(filter) + std::to_string(logging_steps)))
            .gradient_accumulation_steps(1)
            .max_steps(4)
            .save_strategy(IntervalStrategy::no)
            .logging_steps(static_cast<double>(logging_steps))
            .logging_nan_inf_filter(filter);
    Trainer t(model, args, data.train, nullptr, fns);
    t.train();
    return t.state().log_history;
  };
  const auto reference = run(false, true, 1);  // each step's own loss
  const double l4 = reference[3].at("loss");
  const auto filtered = run(true, true, 2);
  ASSERT_EQ(filtered[1].at("step"), 4);
  EXPECT_NEAR(filtered[1].at("loss"), l4 / 2, 1e-6);  // (0 in place of NaN + l4) / 2 steps
  EXPECT_NEAR(filtered[0].at("loss"), (reference[0].at("loss") + reference[1].at("loss")) / 2, 1e-6);
  const auto unfiltered = run(true, false, 2);
  EXPECT_TRUE(std::isnan(unfiltered[1].at("loss")));
}

// report_to: the Trainer's logs reach the Accelerator's trackers
// (TensorBoard event files under logging_dir/run_name).
TEST(Trainer, ReportToWritesTensorBoardEvents) {
  accel::testing::TempDir dir("trainer_tb");
  const auto data = make_data();
  auto model = fresh_model(1);
  Trainer t(model, base_args(dir.path()).save_strategy(IntervalStrategy::no).report_to({"tensorboard"}).run_name("mlp"),
            data.train);
  t.train();
  int event_files = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir.path() / "runs" / "mlp"))
    event_files += e.path().filename().string().starts_with("events.out.tfevents");
  EXPECT_EQ(event_files, 1);
}

// The progress bar over the steps (Transformers' default), off with
// disable_tqdm.
TEST(Trainer, ProgressBarUnlessDisabled) {
  accel::testing::TempDir dir("trainer_bar");
  const auto data = make_data();
  unsetenv("ACCEL_DISABLE_PROGRESS_BARS");
  unsetenv("TQDM_DISABLE");
  const auto run = [&](bool disable) {
    auto model = fresh_model(1);
    Trainer t(model, base_args(dir.path()).save_strategy(IntervalStrategy::no).disable_tqdm(disable), data.train);
    ::testing::internal::CaptureStderr();
    t.train();
    return ::testing::internal::GetCapturedStderr();
  };
  EXPECT_THAT(run(false), HasSubstr("8/8"));
  EXPECT_THAT(run(true), ::testing::Not(HasSubstr("8/8")));
}
