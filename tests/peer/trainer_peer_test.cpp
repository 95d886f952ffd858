// accel::Trainer against transformers.Trainer (the .venv's 5.x) on the same
// small MLP, the same initial weights and data (written by the peer script,
// tests/peer/scripts/trainer_peer.py), on the CPU with 1 and 2 processes: warmup,
// gradient accumulation 2 with a short last update per epoch, clipping,
// weight decay (not on biases and the LayerNorm), evaluation every 2 steps,
// saves every 4 with save_total_limit 2 and load_best_model_at_end. The
// whole log_history must agree (learning rate at every step, losses,
// gradient norms, eval losses), as must the checkpoint folders left, the
// best checkpoint and the final (best) weights. compute_metrics (the mean
// absolute error) runs at every evaluation; after training, predict() on a
// test set of 11 rows (not a multiple of the batch, nor of 2 processes ×
// batch) must return Transformers' predictions, labels and test_ metrics.
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/dist/launcher.h"
#include "accel/trainer/trainer.h"
#include "support/distributed.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"

using namespace accel;
namespace fs = std::filesystem;

namespace {

// The peer script's ARGS.
TrainingArguments peer_arguments(const fs::path& out) {
  return TrainingArguments()
      .output_dir(out.string())
      .per_device_train_batch_size(4)
      .per_device_eval_batch_size(4)
      .gradient_accumulation_steps(2)
      .num_train_epochs(3)
      .learning_rate(3e-2)
      .weight_decay(0.1)
      .max_grad_norm(0.5)
      .warmup_steps(3)
      .lr_scheduler_type("linear")
      .logging_steps(1)
      .eval_strategy(IntervalStrategy::steps)
      .eval_steps(2)
      .save_strategy(IntervalStrategy::steps)
      .save_steps(4)
      .save_total_limit(2)
      .load_best_model_at_end(true)
      .seed(42)
      .optim("adamw_torch")
      .use_cpu(true);
}

// The peer script's compute_metrics.
Metrics mean_absolute_error(const EvalPrediction& p) {
  return {{"mae", (p.predictions - p.label_ids).abs().mean().item<double>()}};
}

ModelFunctions<accel::testing::TrainerMlp> mlp_functions() {
  return ModelFunctions<accel::testing::TrainerMlp>()
      .predict([](auto& model, const TensorDict& b) { return model->logits(b.at("x")); })
      .compute_metrics(mean_absolute_error)
      .main_input_name("x");
}

bool timing_key(const std::string& k) { return k.ends_with("_runtime") || k.ends_with("_per_second"); }

std::vector<std::string> checkpoint_names(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with("checkpoint-")) names.insert(e.path().filename().string());
  return {names.begin(), names.end()};
}

// Trains accel's Trainer on the peer script's files in `dir` (in this
// process) and expects the run the script recorded in `py`.
void expect_same_run(const nlohmann::json& py, const fs::path& dir, int64_t steps, int evaluations,
                     std::optional<TrainingArguments> args = std::nullopt) {
  const auto data = safetensors::load_file(dir / "data.safetensors");
  accel::testing::TrainerMlp model;
  ASSERT_TRUE(load_model_weights(*model, dir / "init.safetensors").ok());
  const fs::path out = dir / "cc_out";
  if (args) args->output_dir(out.string()).use_cpu(true);
  Trainer trainer(model, args ? *args : peer_arguments(out),
                  accel::testing::rows_dataset(data["train_x"], data["train_y"]),
                  accel::testing::rows_dataset(data["eval_x"], data["eval_y"]), mlp_functions());
  trainer.train();
  EXPECT_EQ(trainer.state().global_step, steps);

  // predict() with the final (best) weights, on every rank.
  const auto predicted = trainer.predict(accel::testing::rows_dataset(data["test_x"], data["test_y"]));
  const auto py_predicted = safetensors::load_file(dir / "predict.safetensors");
  ASSERT_TRUE(predicted.predictions.defined());
  ASSERT_EQ(predicted.predictions.sizes(), py_predicted["predictions"].sizes());
  EXPECT_TRUE(torch::allclose(predicted.predictions, py_predicted["predictions"], 1e-4, 1e-5))
      << (predicted.predictions - py_predicted["predictions"]).abs().max().item<double>();
  EXPECT_TRUE(torch::equal(predicted.label_ids, data["test_y"]));
  EXPECT_TRUE(torch::equal(py_predicted["label_ids"], data["test_y"]));
  std::set<std::string> predict_keys;
  for (const auto& [k, v] : predicted.metrics) predict_keys.insert(k);
  std::set<std::string> py_predict_keys;
  for (const auto& [k, v] : py["predict_metrics"].items()) {
    py_predict_keys.insert(k);
    if (!timing_key(k) && predicted.metrics.count(k)) {
      EXPECT_NEAR(predicted.metrics.at(k), v.get<double>(), 1e-4) << k;
    }
  }
  EXPECT_EQ(predict_keys, py_predict_keys);
  EXPECT_TRUE(predicted.metrics.count("test_mae") && predicted.metrics.count("test_loss"));

  // log_history, entry by entry.
  const auto& ours = trainer.state().log_history;
  const auto& theirs = py["log_history"];
  ASSERT_EQ(ours.size(), theirs.size());
  int lrs = 0, eval_losses = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    std::set<std::string> our_keys, their_keys;
    for (const auto& [k, v] : ours[i]) our_keys.insert(k);
    for (const auto& [k, v] : theirs[i].items()) their_keys.insert(k);
    ASSERT_EQ(our_keys, their_keys) << "entry " << i << ": " << theirs[i].dump();
    for (const auto& [k, v] : theirs[i].items()) {
      if (timing_key(k)) continue;
      const double want = v.get<double>(), got = ours[i].at(k);
      if (k == "step" || k == "epoch") {
        EXPECT_DOUBLE_EQ(got, want) << "entry " << i << " " << k;
      } else if (k == "learning_rate") {
        EXPECT_NEAR(got, want, 1e-12) << "entry " << i << " step " << theirs[i]["step"];
        ++lrs;
      } else {
        EXPECT_NEAR(got, want, 1e-4) << "entry " << i << " " << k << " step " << theirs[i]["step"];
        eval_losses += k == "eval_loss";
      }
    }
  }
  if (!args) {
    EXPECT_EQ(lrs, steps);  // every step logged its learning rate
  }
  EXPECT_EQ(eval_losses, evaluations);

  if (!trainer.accelerator().is_main_process()) return;
  // The folders left after rotation, and the best one.
  EXPECT_EQ(checkpoint_names(out), py["checkpoints"].get<std::vector<std::string>>());
  // The best checkpoint (none when the best evaluation fell on a step that
  // was not saved: then both keep the last weights).
  const auto& best = trainer.state().best_model_checkpoint;
  EXPECT_EQ(best ? nlohmann::json(fs::path(*best).filename().string()) : nlohmann::json(nullptr),
            py["best_model_checkpoint"]);

  // Each checkpoint's trainer_state.json: Transformers' fields and values.
  for (const auto& name : py["checkpoints"]) {
    std::ifstream theirs_in(dir / "py_out" / name.get<std::string>() / "trainer_state.json");
    std::ifstream ours_in(out / name.get<std::string>() / "trainer_state.json");
    ASSERT_TRUE(ours_in.good()) << name;
    const auto t = nlohmann::json::parse(theirs_in), o = nlohmann::json::parse(ours_in);
    std::set<std::string> tk, ok;
    for (const auto& [k, v] : t.items()) tk.insert(k);
    for (const auto& [k, v] : o.items()) ok.insert(k);
    EXPECT_EQ(ok, tk) << name;
    for (const auto& [k, v] : t.items()) {
      if (!o.contains(k)) continue;
      const auto& mine = o[k];
      if (k == "log_history") {
        EXPECT_EQ(mine.size(), v.size()) << name;
      } else if (k == "best_model_checkpoint" && v.is_string()) {
        EXPECT_EQ(fs::path(mine.get<std::string>()).filename(), fs::path(v.get<std::string>()).filename());
      } else if (v.is_number_float()) {
        EXPECT_NEAR(mine.get<double>(), v.get<double>(), 1e-4) << name << " " << k;
      } else {
        EXPECT_EQ(mine, v) << name << " " << k;
      }
    }
  }

  // Final weights: the best checkpoint's, loaded at the end, or the last.
  const auto final_py = safetensors::load_file(py["final"].get<std::string>());
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(final_py.contains(p.key())) << p.key();
    EXPECT_TRUE(torch::allclose(p.value(), final_py[p.key()], 1e-4, 1e-5))
        << p.key() << " max diff " << (p.value() - final_py[p.key()]).abs().max().item<double>();
  }
}

}  // namespace

TEST(TrainerPeer, SameRunAsTransformersTrainer) {
  REQUIRE_PEERS("torch", "transformers", "safetensors");
  accel::testing::TempDir dir("trainer_peer");
  const auto py = accel::testing::run_peer_script("trainer_peer.py", {dir.path().string()});
  // 9 batches an epoch, 5 updates, 3 epochs; evaluations at 2, 4, ..., 14 and 15.
  expect_same_run(py, dir.path(), 15, 8);
  // The best is not the newest here, so rotation had to keep it.
  EXPECT_EQ(py["checkpoints"].size(), 2u);
  EXPECT_EQ(py["best_model_checkpoint"], "checkpoint-4");
}

// Both Trainers with 2 processes (torchrun and DDP over Gloo for
// Transformers; run_distributed's forked ranks for accel): each rank trains
// on its share of every batch, the logged losses are averaged over ranks.
TEST(TrainerPeer, TwoProcessesSameRunAsTransformersTrainer) {
  REQUIRE_PEERS("torch", "transformers", "safetensors");
  accel::testing::TempDir dir("trainer_peer2");
  const std::string cmd = "cd " + dir.path().string() +
                          " && env CUDA_VISIBLE_DEVICES= " + accel::testing::venv_program("torchrun") +
                          " --nproc_per_node 2 --master_port " + std::to_string(accel::find_free_port()) + " " +
                          accel::testing::peer_script("trainer_peer.py") + " " + dir.path().string();
  const auto run = accel::testing::run_shell(cmd, dir.path() / "torchrun.log");
  ASSERT_EQ(run.status, 0) << cmd << "\n" << run.output;
  std::ifstream in(dir.path() / "result.json");
  const auto py = nlohmann::json::parse(in);
  // Per rank: 5 batches of the 9 (the last evened out), so 3 updates an
  // epoch, 9 steps; evaluations at 2, 4, 6, 8 and 9.
  accel::testing::run_distributed(2, [&] { expect_same_run(py, dir.path(), 9, 5); });
  // The best evaluation (step 2) was not saved: no best checkpoint in either.
  EXPECT_TRUE(py["best_model_checkpoint"].is_null());
}

// The epoch strategies: log, evaluate (from epoch 2 on: eval_delay) and
// save at each epoch's end, plus the first step's log; a fractional
// num_train_epochs (2.5 epochs of 3 updates: 8 steps, the last epoch cut
// short, where the end of training evaluates and saves); accumulation 4
// (updates of 4, 4 and 1 batches); a cosine schedule with a warmup ratio; no
// clipping (the norm is still logged); save_total_limit 1 with the best
// model (only the best folder is left). The arguments reach both Trainers
// as the same JSON.
TEST(TrainerPeer, EpochStrategiesSameRunAsTransformersTrainer) {
  REQUIRE_PEERS("torch", "transformers", "safetensors");
  accel::testing::TempDir dir("trainer_peer_epochs");
  const nlohmann::json args = {{"per_device_train_batch_size", 4},
                               {"per_device_eval_batch_size", 3},
                               {"gradient_accumulation_steps", 4},
                               {"num_train_epochs", 2.5},
                               {"learning_rate", 2e-2},
                               {"weight_decay", 0.01},
                               {"max_grad_norm", 0.0},
                               {"warmup_steps", 0.2},
                               {"lr_scheduler_type", "cosine"},
                               {"logging_strategy", "epoch"},
                               {"logging_first_step", true},
                               {"eval_strategy", "epoch"},
                               {"eval_delay", 2},
                               {"save_strategy", "epoch"},
                               {"save_total_limit", 1},
                               {"load_best_model_at_end", true},
                               {"seed", 7},
                               {"optim", "adamw_torch"}};
  const auto py = accel::testing::run_peer_script("trainer_peer.py", {dir.path().string(), args.dump()});
  // Evaluations at the ends of epochs 2 and 3 (step 6, and step 8 where the
  // cut epoch ends).
  expect_same_run(py, dir.path(), 8, 2, TrainingArguments::from_json(args.dump()));
  EXPECT_EQ(py["checkpoints"].size(), 1u);
}

// eval_on_start (an evaluation at step 0, not a candidate for the best),
// include_num_input_tokens_seen (true: "all"; the x entries' elements
// summed over processes, logged with every entry, with the training logs'
// token speed) and eval_accumulation_steps (accepted; no effect on the numbers).
TEST(TrainerPeer, EvalOnStartAndTokensSeenSameRunAsTransformersTrainer) {
  REQUIRE_PEERS("torch", "transformers", "safetensors");
  accel::testing::TempDir dir("trainer_peer_extras");
  const nlohmann::json args = {{"per_device_train_batch_size", 4},
                               {"per_device_eval_batch_size", 4},
                               {"gradient_accumulation_steps", 2},
                               {"max_steps", 6},
                               {"learning_rate", 2e-2},
                               {"logging_steps", 2},
                               {"eval_strategy", "steps"},
                               {"eval_steps", 3},
                               {"eval_on_start", true},
                               {"eval_accumulation_steps", 2},
                               {"include_num_input_tokens_seen", true},
                               {"seed", 3},
                               {"optim", "adamw_torch"}};
  const auto py = accel::testing::run_peer_script("trainer_peer.py", {dir.path().string(), args.dump()});
  // Evaluations at steps 0, 3 and 6. 11 micro-batches of 4 rows of 8: the
  // first epoch's 9 (updates of 2, 2, 2, 2 and 1), then 2.
  expect_same_run(py, dir.path(), 6, 3, TrainingArguments::from_json(args.dump()));
  EXPECT_EQ(py["log_history"][0]["step"], 0);
  EXPECT_TRUE(py["log_history"][0].contains("eval_loss"));
  EXPECT_EQ(py["log_history"].back()["num_input_tokens_seen"], 11 * 4 * 8);
}
