// accel's DVCLive tracker against Accelerate's (through dvclive itself):
// the same run logged by both, each in a folder of its own, gives the same
// files byte for byte (params.yaml: the same values as dvclive reads them),
// and dvc's API reads accel's metrics and params.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "accel/accelerator.h"
#include "accel/tracking/dvclive.h"
#include "support/environment.h"
#include "support/peers.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::run_peer_script;
using accel::testing::TempDir;
using nlohmann::json;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Runs in `dir` for its lifetime (the tracker's default folder is relative).
struct InFolder {
  std::filesystem::path before = std::filesystem::current_path();
  explicit InFolder(const std::filesystem::path& dir) { std::filesystem::current_path(dir); }
  ~InFolder() { std::filesystem::current_path(before); }
};

json value_json(const auto& value) {
  using T = std::decay_t<decltype(value)>;
  if constexpr (std::is_same_v<T, double>) {
    if (!std::isfinite(value)) return {{"float", std::isnan(value) ? "nan" : value > 0 ? "inf" : "-inf"}};
    return value;
  } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
    return value;
  } else {
    return nullptr;
  }
}

struct Log {
  accel::LogValues values;
  std::optional<int64_t> step;
};

TEST(DVCLivePeer, TheSameRunGivesDvclivesFiles) {
  REQUIRE_PEERS("dvclive", "dvc", "accelerate");
  TempDir dir("dvclive");
  const accel::TrackerConfig config = {{"lr", 0.003},   {"layers", int64_t{4}}, {"optimizer", "adamw"}, {"fused", true},
                                       {"tiny", 1e-05}, {"note", "a: b"},       {"big_number", 1e16},   {"yes", "yes"}};
  std::vector<Log> logs;
  for (int64_t step = 0; step < 20; ++step)
    logs.push_back({{{"loss", 1.0 / (step + 1)}, {"train/acc", step / 20.0}, {"epoch", step / 10}}, std::nullopt});
  logs.push_back({{{"bad", kNan}, {"big", kInf}, {"small", -kInf}, {"text", "tab\there \"q\""}}, 30});
  logs.push_back({{{"loss", 0.01}, {"eval/deep/acc", 0.75}, {"ünïcode", 1e-07}}, std::nullopt});  // step 31

  std::filesystem::create_directories(dir / "accel");
  {
    InFolder in(dir / "accel");
    accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"dvclive"}));
    acc.init_trackers("spirals", config);
    for (const auto& log : logs) acc.log(log.values, log.step);
    acc.end_training();
  }

  json sequence = {{"project", "spirals"}, {"config", json::array()}, {"logs", json::array()}};
  for (const auto& [key, value] : config)
    sequence["config"].push_back({key, std::visit([](const auto& v) { return value_json(v); }, value)});
  for (const auto& log : logs) {
    json values = json::array();
    for (const auto& [key, value] : log.values)
      values.push_back({key, std::visit([](const auto& v) { return value_json(v); }, value)});
    sequence["logs"].push_back({{"values", values}, {"step", log.step ? json(*log.step) : json(nullptr)}});
  }
  std::ofstream(dir / "sequence.json") << sequence.dump();
  std::filesystem::create_directories(dir / "python");
  run_peer_script("dvclive_peer.py", {"run", (dir / "sequence.json").string(), (dir / "python").string()});

  const json ours = run_peer_script("dvclive_peer.py", {"read", (dir / "accel").string()});
  const json theirs = run_peer_script("dvclive_peer.py", {"read", (dir / "python").string()});
  // Every file, byte for byte; params.yaml by the values dvclive reads
  // (ruamel and accel may quote a string differently).
  json our_files = ours["files"], their_files = theirs["files"];
  ASSERT_TRUE(our_files.contains("dvclive/params.yaml")) << our_files.dump(1);
  our_files.erase("dvclive/params.yaml");
  their_files.erase("dvclive/params.yaml");
  EXPECT_EQ(our_files.size(), their_files.size());
  for (const auto& [path, text] : their_files.items()) {
    ASSERT_TRUE(our_files.contains(path)) << path << " is missing";
    EXPECT_EQ(our_files[path], text) << path;
  }
  EXPECT_EQ(ours["params"], theirs["params"]);
  EXPECT_EQ(ours["params"]["lr"], 0.003);
  EXPECT_EQ(ours["histories"], theirs["histories"]);
  EXPECT_EQ(ours["histories"]["loss.tsv"].size(), 21u);
  // dvc itself: `dvc metrics show` and `dvc params show` of accel's run.
  EXPECT_EQ(ours["dvc"], theirs["dvc"]);
  EXPECT_EQ(ours["dvc"]["metrics"]["step"], 31);
  EXPECT_EQ(ours["dvc"]["metrics"]["eval"]["deep"]["acc"], 0.75);
  EXPECT_EQ(ours["dvc"]["params"]["optimizer"], "adamw");
}

TEST(DVCLivePeer, AnEarlierRunsFilesGoAndAUsersDvcYamlStays) {
  TempDir dir("dvclive");
  std::filesystem::create_directories(dir / "live" / "plots" / "metrics");
  std::ofstream(dir / "live" / "plots" / "metrics" / "old.tsv") << "step\told\n0\t1\n";
  std::ofstream(dir / "dvc.yaml") << "stages:\n  train:\n    cmd: ./train\n";
  auto tracker =
      std::make_shared<accel::DVCLiveTracker>(accel::DVCLiveOptions().dir(dir / "live").dvcyaml(dir / "dvc.yaml"));
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).trackers({tracker}));
  acc.init_trackers("run");
  acc.log({{"loss", 0.5}});
  acc.end_training();
  EXPECT_FALSE(std::filesystem::exists(dir / "live" / "plots" / "metrics" / "old.tsv"));
  std::ifstream yaml(dir / "dvc.yaml");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(yaml), {}), "stages:\n  train:\n    cmd: ./train\n");
  std::ifstream loss(dir / "live" / "plots" / "metrics" / "loss.tsv");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(loss), {}), "step\tloss\n0\t0.5\n");
}

}  // namespace
