// Experiment tracking through the Accelerator: which trackers a name
// gives, what reaches a tracker, and what happens when one fails.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "accel/accelerator.h"
#include "accel/tracking/tensorboard.h"
#include "accel/tracking/trackers.h"
#include "support/environment.h"
#include "support/errors.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::expect_error;
using accel::testing::TempDir;

// Records every call, in order.
struct RecordingTracker : accel::GeneralTracker {
  std::vector<std::string> calls;
  accel::TrackerConfig config;
  std::vector<std::pair<accel::LogValues, std::optional<int64_t>>> logged;
  std::string name() const override { return "recording"; }
  void start() override { calls.push_back("start"); }
  void store_init_configuration(const accel::TrackerConfig& c) override {
    calls.push_back("config");
    config = c;
  }
  void log(const accel::LogValues& values, std::optional<int64_t> step) override {
    calls.push_back("log");
    logged.emplace_back(values, step);
  }
  void finish() override { calls.push_back("finish"); }
};

// Fails every log() after the first.
struct FailingTracker : accel::GeneralTracker {
  int logs = 0;
  std::string name() const override { return "failing"; }
  void log(const accel::LogValues&, std::optional<int64_t>) override {
    if (++logs > 1) throw std::runtime_error("the server at 127.0.0.1:9 refused the connection");
  }
};

TEST(TrackerNames, AllExpandsAndUnknownOrAccelerateOnlyNamesAreRefused) {
  {
    accel::testing::ScopedEnv env("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000");
    EXPECT_EQ(accel::resolve_tracker_names({"all"}), accel::available_trackers());
  }
  {
    accel::testing::ScopedEnv env("MLFLOW_TRACKING_URI", std::nullopt);  // no server: "all" leaves MLflow out
    EXPECT_EQ(accel::resolve_tracker_names({"DVCLive", "all"}),
              (std::vector<std::string>{"dvclive", "tensorboard", "wandb", "comet_ml"}));
  }
  EXPECT_EQ(accel::resolve_tracker_names({"MLflow"}), std::vector<std::string>{"mlflow"});
  EXPECT_TRUE(accel::resolve_tracker_names({}).empty());
  expect_error<std::invalid_argument>([] { accel::resolve_tracker_names({"tensorbord"}); },
                                      {"\"tensorbord\"", "tensorboard", "\"all\""});
  expect_error<std::invalid_argument>([] { accel::resolve_tracker_names({"clearml"}); },
                                      {"\"clearml\"", "Accelerate", "does not offer", "GeneralTracker"});
  // The Accelerator refuses at construction, before any training.
  expect_error<std::invalid_argument>(
      [] { accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"aim"})); }, {"\"aim\""});
}

TEST(Tracking, ATrackerOfOneOwnGetsStartConfigEveryLogAndFinish) {
  auto tracker = std::make_shared<RecordingTracker>();
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).trackers({tracker}));
  acc.log({{"ignored", 1.0}});  // before init_trackers: nothing to log to
  acc.init_trackers("run", {{"lr", 3e-4}, {"layers", int64_t{12}}, {"opt", "adamw"}, {"fused", true}});
  acc.log({{"loss", 0.5}, {"step_note", "warm-up"}}, 7);
  acc.log({{"loss", 0.25}});
  EXPECT_EQ(acc.get_tracker("recording"), tracker);
  acc.end_training();
  EXPECT_EQ(tracker->calls, (std::vector<std::string>{"start", "config", "log", "log", "finish"}));
  ASSERT_EQ(tracker->config.size(), 4u);
  EXPECT_EQ(std::get<double>(tracker->config[0].second), 3e-4);
  EXPECT_EQ(std::get<int64_t>(tracker->config[1].second), 12);
  EXPECT_EQ(std::get<std::string>(tracker->config[2].second), "adamw");
  EXPECT_EQ(std::get<bool>(tracker->config[3].second), true);
  ASSERT_EQ(tracker->logged.size(), 2u);
  EXPECT_EQ(tracker->logged[0].second, 7);
  EXPECT_EQ(std::get<std::string>(tracker->logged[0].first[1].second), "warm-up");
  EXPECT_FALSE(tracker->logged[1].second.has_value());
  // After end_training the run can start again.
  acc.init_trackers("second");
  EXPECT_EQ(tracker->calls.back(), "start");
  acc.end_training();
}

TEST(Tracking, AFailingTrackerIsReportedOnceAndTrainingGoesOn) {
  auto failing = std::make_shared<FailingTracker>();
  auto recording = std::make_shared<RecordingTracker>();
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).trackers({failing, recording}));
  acc.init_trackers("run");
  ::testing::internal::CaptureStderr();
  for (int step = 0; step < 5; ++step) acc.log({{"loss", 1.0 / (step + 1)}}, step);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(failing->logs, 5);              // still called: a server may come back
  EXPECT_EQ(recording->logged.size(), 5u);  // the others never miss a step
  EXPECT_NE(err.find("\"failing\" failed to log step 1"), std::string::npos) << err;
  EXPECT_NE(err.find("127.0.0.1:9"), std::string::npos) << err;
  EXPECT_EQ(err.find("step 2"), std::string::npos) << "reported more than once:\n" << err;
  acc.end_training();
}

TEST(Tracking, BadCallsAreRefusedByName) {
  TempDir dir("tracking");
  accel::Accelerator acc(accel::AcceleratorOptions()
                             .cpu(true)
                             .log_with({"tensorboard"})
                             .project_config(accel::ProjectConfiguration().project_dir(dir.path())));
  expect_error<std::invalid_argument>([&] { acc.get_tracker("aim"); }, {"\"aim\"", "not a tracker"});
  EXPECT_EQ(acc.get_tracker("tensorboard"), nullptr);  // not started yet
  expect_error<std::invalid_argument>([&] { acc.init_trackers("a/b"); }, {"\"a/b\"", "one folder"});
  expect_error<std::invalid_argument>([&] { acc.init_trackers(""); }, {"project_name"});
  acc.init_trackers("run");
  expect_error<std::logic_error>([&] { acc.init_trackers("run"); }, {"already started", "end_training"});
  auto tensorboard = std::dynamic_pointer_cast<accel::TensorBoardTracker>(acc.get_tracker("tensorboard"));
  ASSERT_TRUE(tensorboard);
  EXPECT_EQ(tensorboard->run_dir(), dir.path() / "run");  // logging_dir defaults to project_dir
  acc.end_training();
}

TEST(Tracking, AnUnwritableLoggingDirStopsInitTrackers) {
  // A folder under a regular file: not creatable even by root (tests run as root here).
  TempDir dir("tracking");
  std::ofstream(dir / "a_file") << "x";
  accel::Accelerator acc(accel::AcceleratorOptions()
                             .cpu(true)
                             .log_with({"tensorboard"})
                             .project_config(accel::ProjectConfiguration().logging_dir(dir / "a_file" / "logs")));
  expect_error<std::runtime_error>([&] { acc.init_trackers("run"); },
                                   {"\"tensorboard\" could not start", (dir / "a_file" / "logs" / "run").string()});
}

}  // namespace
