// accel's offline W&B runs, read back by wandb's own reader: `wandb leet
// inspect` (the .venv's wandb, whose wandb-core also reads the file for
// `wandb sync`), as the run's summary and record by record.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/tracking/wandb.h"
#include "support/files.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::TempDir;
using nlohmann::json;

// `wandb leet inspect ARGS` with what it printed on stdout.
std::string inspect(const TempDir& dir, const std::string& args) {
  const auto out = dir / "inspect.out";
  // In parentheses: run_shell sends the whole line's output to its log; the
  // records go to their own file, the reader's messages to the log.
  const std::string command = "(WANDB_ERROR_REPORTING=false WANDB_CONFIG_DIR='" + (dir / "wandb-config").string() +
                              "' '" + accel::testing::venv_program("wandb") + "' leet inspect " + args + " > '" +
                              out.string() + "')";
  const auto r = accel::testing::run_shell(command, dir / "inspect.log");
  EXPECT_EQ(r.status, 0) << command << "\n" << r.output;
  // The reader checks every chunk's CRC and skips what fails, saying so.
  EXPECT_EQ(r.output.find("corrupt"), std::string::npos) << r.output;
  auto text = accel::testing::read_file(out);
  EXPECT_FALSE(text.empty()) << command << " printed nothing; its log:\n" << r.output;
  return text;
}

TEST(WandbPeer, AnOfflineRunReadsBackWithWandbsReader) {
  REQUIRE_PEERS("wandb");
  TempDir dir("wandb_peer");
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"wandb"}).project_config(
      accel::ProjectConfiguration().project_dir(dir.path())));
  acc.init_trackers("accel-spirals", {{"lr", 0.003}, {"layers", int64_t{4}}, {"optimizer", "adamw"}, {"fused", true}});
  for (int64_t step = 0; step < 3; ++step) acc.log({{"train_loss", 1.0 / (step + 1)}, {"count", step}}, step);
  // Past a 32 KiB block: the record is split across blocks (FIRST/MIDDLE/LAST).
  const std::string long_note(70000, 'x');
  acc.log({{"note", long_note},
           {"nan", std::numeric_limits<double>::quiet_NaN()},
           {"inf", std::numeric_limits<double>::infinity()},
           {"pair", std::map<std::string, double>{{"a", 1.5}, {"b", 2.0}}},
           {"weights", torch::arange(100, torch::kFloat32)}});
  auto tracker = std::dynamic_pointer_cast<accel::WandbTracker>(acc.get_tracker("wandb"));
  ASSERT_TRUE(tracker);
  const auto run_dir = tracker->run_dir();
  acc.end_training();
  EXPECT_EQ(run_dir.parent_path(), dir / "wandb");
  EXPECT_EQ(run_dir.filename().string().rfind("offline-run-", 0), 0u) << run_dir;

  const json summary = json::parse(inspect(dir, "--summary --json '" + run_dir.string() + "'"));
  EXPECT_EQ(summary["project"], "accel-spirals");
  EXPECT_EQ(summary["run_id"], tracker->run_id());
  EXPECT_EQ(summary["state"], "finished") << summary.dump(1);
  EXPECT_EQ(summary["exit_code"], 0);
  EXPECT_EQ(summary["config"], json::parse(R"({"lr": 0.003, "layers": 4, "optimizer": "adamw", "fused": true})"));
  EXPECT_EQ(summary["step"], 3);
  const json& s = summary["summary"];
  EXPECT_EQ(s["train_loss"].get<double>(), 1.0 / 3);  // the last value, bit for bit
  EXPECT_EQ(s["count"], 2);
  EXPECT_EQ(s["note"], long_note);
  EXPECT_EQ(s["nan"], "NaN");
  EXPECT_EQ(s["inf"], "Infinity");
  EXPECT_EQ(s["pair"], json::parse(R"({"a": 1.5, "b": 2})"));
  EXPECT_EQ(s["_step"], 3);
  EXPECT_GE(s["_runtime"].get<double>(), 0);

  // Record by record: the history rows in order, with their steps.
  std::vector<json> history;
  std::istringstream lines(inspect(dir, "--json '" + run_dir.string() + "'"));
  for (std::string line; std::getline(lines, line);)
    if (auto record = json::parse(line); record["type"] == "history") history.push_back(record["history"]);
  ASSERT_EQ(history.size(), 4u);
  for (int64_t step = 0; step < 3; ++step) {
    EXPECT_EQ(history[step]["step"]["num"], step) << history[step].dump();
    EXPECT_EQ(history[step]["item"]["train_loss"].get<double>(), 1.0 / (step + 1));
    EXPECT_EQ(history[step]["item"]["count"], step);
  }
  const json& weights = history[3]["item"]["weights"];
  EXPECT_EQ(weights["_type"], "histogram") << weights.dump();
  ASSERT_EQ(weights["values"].size(), 64u);
  ASSERT_EQ(weights["bins"].size(), 65u);
  int64_t counted = 0;
  for (const auto& c : weights["values"]) counted += c.get<int64_t>();
  EXPECT_EQ(counted, 100);
  EXPECT_EQ(weights["bins"][0], 0.0);
  EXPECT_EQ(weights["bins"][64], 99.0);
}

}  // namespace
