// accel::Trainer against transformers.Trainer (the .venv's 5.x) on the same
// small MLP, the same initial weights and data (written by the peer script,
// tests/peer/scripts/trainer_peer.py), one process on the CPU: warmup,
// gradient accumulation 2 with a short last update per epoch, clipping,
// weight decay (not on biases and the LayerNorm), evaluation every 2 steps,
// saves every 4 with save_total_limit 2 and load_best_model_at_end. The
// whole log_history must agree (learning rate at every step, losses,
// gradient norms, eval losses), as must the checkpoint folders left, the
// best checkpoint and the final (best) weights.
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/trainer/trainer.h"
#include "support/peers.h"
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

bool timing_key(const std::string& k) { return k.ends_with("_runtime") || k.ends_with("_per_second"); }

std::vector<std::string> checkpoint_names(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with("checkpoint-")) names.insert(e.path().filename().string());
  return {names.begin(), names.end()};
}

}  // namespace

TEST(TrainerPeer, SameRunAsTransformersTrainer) {
  REQUIRE_PEERS("torch", "transformers", "safetensors");
  accel::testing::TempDir dir("trainer_peer");
  const auto py = accel::testing::run_peer_script("trainer_peer.py", {dir.path().string()});

  const auto data = safetensors::load_file(dir.path() / "data.safetensors");
  accel::testing::TrainerMlp model;
  ASSERT_TRUE(load_model_weights(*model, dir.path() / "init.safetensors").ok());
  const fs::path out = dir.path() / "cc_out";
  Trainer trainer(model, peer_arguments(out), accel::testing::rows_dataset(data["train_x"], data["train_y"]),
                  accel::testing::rows_dataset(data["eval_x"], data["eval_y"]));
  trainer.train();

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
  EXPECT_EQ(lrs, 15);  // every step logged its learning rate
  EXPECT_EQ(eval_losses, 8);

  // The folders left after rotation, and the best one.
  const auto names = checkpoint_names(out);
  EXPECT_EQ(names, py["checkpoints"].get<std::vector<std::string>>());
  ASSERT_TRUE(trainer.state().best_model_checkpoint.has_value());
  EXPECT_EQ(fs::path(*trainer.state().best_model_checkpoint).filename().string(),
            py["best_model_checkpoint"].get<std::string>());
  // The best is not the newest here, so rotation had to keep it.
  EXPECT_EQ(trainer.state().global_step, 15);
  EXPECT_NE(py["best_model_checkpoint"].get<std::string>(), "checkpoint-15");
  EXPECT_EQ(names.size(), 2u);

  // Final weights: the best checkpoint's, loaded at the end.
  const auto final_py = safetensors::load_file(py["final"].get<std::string>());
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(final_py.contains(p.key())) << p.key();
    EXPECT_TRUE(torch::allclose(p.value(), final_py[p.key()], 1e-4, 1e-5))
        << p.key() << " max diff " << (p.value() - final_py[p.key()]).abs().max().item<double>();
  }
}
