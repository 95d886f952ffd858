// accel's TensorBoard event files, read back by TensorBoard itself (the
// .venv's tensorboard): its EventAccumulator, the hparams plugin's protos,
// torch's make_histogram for the buckets, and TensorBoard's server asked
// over HTTP on loopback for what its web page draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/tracking/tensorboard.h"
#include "support/peers.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::run_peer_script;
using accel::testing::TempDir;
using nlohmann::json;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A run written through the Accelerator, as a training loop writes it.
std::filesystem::path write_run(const TempDir& dir, const torch::Tensor& weights) {
  accel::Accelerator acc(accel::AcceleratorOptions()
                             .cpu(true)
                             .log_with({"tensorboard"})
                             .project_config(accel::ProjectConfiguration().project_dir(dir.path())));
  acc.init_trackers("spirals", {{"lr", 0.003}, {"layers", int64_t{4}}, {"optimizer", "adamw"}, {"fused", true}});
  for (int64_t step = 0; step < 50; ++step)
    acc.log({{"loss", 1.0 / (step + 1)}, {"lr", 0.003 * (50 - step) / 50}}, step);
  acc.log({{"note", "warm-up done, ünïcode kept"}}, 10);
  acc.log({{"bad", kNan}, {"big", kInf}, {"small", -kInf}}, 50);
  acc.log({{"accuracy", std::map<std::string, double>{{"train", 0.9}, {"eval", 0.8}}}}, 50);
  acc.log({{"weights", weights}}, 50);
  acc.end_training();
  return dir / "spirals";
}

TEST(TensorBoardPeer, EventAccumulatorReadsEveryKindOfValue) {
  REQUIRE_PEERS("tensorboard", "torch");
  TempDir dir("tensorboard");
  torch::manual_seed(0);
  const auto weights = torch::randn({1000}, torch::kFloat64) * 3;
  write_run(dir, weights);
  const json runs = run_peer_script("tensorboard_read.py", {"read", dir.path().string()})["runs"];

  // The run's folder, as Accelerate's <logging_dir>/<project_name>.
  ASSERT_TRUE(runs.contains("spirals")) << runs.dump();
  const json& run = runs["spirals"];
  ASSERT_EQ(run["scalars"]["loss"].size(), 50u);
  for (int step = 0; step < 50; ++step) {
    EXPECT_EQ(run["scalars"]["loss"][step][0], step);
    EXPECT_FLOAT_EQ(run["scalars"]["loss"][step][1].get<double>(), 1.0 / (step + 1));  // float32 in the file
    EXPECT_FLOAT_EQ(run["scalars"]["lr"][step][1].get<double>(), 0.003 * (50 - step) / 50);
  }
  EXPECT_EQ(run["scalars"]["bad"][0][1], "nan");
  EXPECT_EQ(run["scalars"]["big"][0][1], "inf");
  EXPECT_EQ(run["scalars"]["small"][0][1], "-inf");
  EXPECT_EQ(run["texts"]["note/text_summary"][0], json({10, "warm-up done, ünïcode kept"}));

  // add_scalars: one folder per entry, the key as tag.
  EXPECT_FLOAT_EQ(runs["spirals/accuracy_train"]["scalars"]["accuracy"][0][1].get<double>(), 0.9);
  EXPECT_FLOAT_EQ(runs["spirals/accuracy_eval"]["scalars"]["accuracy"][0][1].get<double>(), 0.8);

  // hparams: the HPARAMS tab's values, declared names and a finished session.
  const json& hparams = run["hparams"];
  EXPECT_DOUBLE_EQ(hparams["values"]["lr"].get<double>(), 0.003);
  EXPECT_EQ(hparams["values"]["layers"], 4.0);
  EXPECT_EQ(hparams["values"]["optimizer"], "adamw");
  EXPECT_EQ(hparams["values"]["fused"], 1.0);  // torch writes bools as numbers too
  EXPECT_EQ(hparams["declared"], json({"lr", "layers", "optimizer", "fused"}));
  EXPECT_EQ(hparams["status"], 1);  // STATUS_SUCCESS

  // The histogram: the same buckets as torch's add_histogram of the same values.
  const json& histogram = run["histograms"]["weights"][0];
  std::vector<double> values(weights.data_ptr<double>(), weights.data_ptr<double>() + weights.numel());
  const auto values_file = dir / "values.json";
  std::ofstream(values_file) << json(values).dump();
  const json torch_histogram = run_peer_script("tensorboard_read.py", {"histogram", values_file.string()});
  EXPECT_EQ(histogram["bucket_limit"], torch_histogram["bucket_limit"]);
  EXPECT_EQ(histogram["bucket"], torch_histogram["bucket"]);
  EXPECT_EQ(histogram["num"], 1000);
  EXPECT_NEAR(histogram["sum"].get<double>(), weights.sum().item<double>(), 1e-9);
  EXPECT_EQ(histogram["min"], weights.min().item<double>());
  EXPECT_EQ(histogram["max"], weights.max().item<double>());
}

TEST(TensorBoardPeer, TheServerShowsTheRunsScalars) {
  REQUIRE_PEERS("tensorboard");
  TempDir dir("tensorboard");
  write_run(dir, torch::arange(10, torch::kFloat64));
  const json served = run_peer_script("tensorboard_read.py", {"serve", dir.path().string(), "spirals", "loss"});
  ASSERT_FALSE(served.contains("error")) << served.dump();
  const auto runs = served["runs"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(runs.begin(), runs.end(), "spirals"), runs.end()) << served.dump();
  ASSERT_EQ(served["points"].size(), 50u) << served.dump();
  EXPECT_EQ(served["points"][49][0], 49);
  EXPECT_FLOAT_EQ(served["points"][49][1].get<double>(), 1.0 / 50);
}

}  // namespace
