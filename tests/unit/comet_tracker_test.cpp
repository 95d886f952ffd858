// The comet_ml tracker's refusals (comet_ml's environment variables with
// bad values, a folder it cannot write) and where its archive goes. What
// the archive holds is read back by comet_ml itself in
// tests/peer/comet_peer_test.cpp.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>

#include "accel/accelerator.h"
#include "accel/tracking/comet.h"
#include "support/environment.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::expect_error;
using accel::testing::TempDir;

accel::CometTracker tracker_with(const std::filesystem::path& dir, std::map<std::string, std::string> env) {
  return accel::CometTracker("run", dir, accel::env_from_map(std::move(env)));
}

TEST(CometTracker, BadEnvironmentValuesAreRefusedByName) {
  TempDir dir("comet");
  expect_error<std::invalid_argument>(
      [&] {
        tracker_with(dir, {{"COMET_START_ONLINE", "maybe"}}).start();
      },
      {"COMET_START_ONLINE=\"maybe\"", "not a boolean", "true", "off"});
  expect_error<std::invalid_argument>(
      [&] {
        tracker_with(dir, {{"COMET_START_ONLINE", "True"}}).start();
      },
      {"COMET_START_ONLINE=\"True\"", "offline only", "comet upload"});
  expect_error<std::invalid_argument>(
      [&] {
        tracker_with(dir, {{"COMET_START_MODE", "resume"}}).start();
      },
      {"COMET_START_MODE=\"resume\"", "get_or_create, create, get"});
  expect_error<std::invalid_argument>(
      [&] {
        tracker_with(dir, {{"COMET_START_MODE", "get"}}).start();
      },
      {"COMET_START_MODE=get", "COMET_EXPERIMENT_KEY"});
  expect_error<std::invalid_argument>(
      [&] {
        tracker_with(dir, {{"COMET_EXPERIMENT_KEY", "short"}}).start();
      },
      {"COMET_EXPERIMENT_KEY=\"short\"", "32 to 50 letters and digits"});
  // Nothing was written by the refused starts.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(CometTracker, AnUnwritableDirectoryStopsInitTrackersBeforeTraining) {
  TempDir dir("comet");
  std::ofstream(dir / "file") << "not a folder";
  accel::testing::ScopedEnv env("COMET_OFFLINE_DIRECTORY", std::nullopt);
  // Through logging_dir (project_dir), and through COMET_OFFLINE_DIRECTORY.
  accel::Accelerator acc(accel::AcceleratorOptions()
                             .cpu(true)
                             .log_with({"comet_ml"})
                             .project_config(accel::ProjectConfiguration().project_dir(dir / "file" / "runs")));
  expect_error<std::runtime_error>([&] { acc.init_trackers("run"); },
                                   {"\"comet_ml\" could not start", "offline directory", "file/runs"});
  expect_error<std::runtime_error>(
      [&] {
        tracker_with(dir, {{"COMET_OFFLINE_DIRECTORY", (dir / "file" / "x").string()}}).start();
      },
      {"offline directory", "file/x"});
}

TEST(CometTracker, TheArchiveIsTemporaryUntilFinish) {
  TempDir dir("comet");
  auto tracker = tracker_with(dir / "logs", {{"COMET_OFFLINE_DIRECTORY", (dir / "offline").string()}});
  tracker.start();
  tracker.log({{"loss", 0.5}}, 0);
  tracker.flush();
  const auto archive = tracker.archive_path();
  EXPECT_EQ(archive.parent_path(), dir / "offline");
  // <key>-<6 letters>.zip, the key 32 hex digits as uuid4().hex.
  EXPECT_TRUE(std::regex_match(archive.filename().string(),
                               std::regex("[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}-[A-Za-z]{6}\\.zip")))
      << archive;
  EXPECT_EQ(archive.filename().string().substr(0, 32), tracker.experiment_key());
  EXPECT_FALSE(std::filesystem::exists(archive));
  EXPECT_TRUE(std::filesystem::exists(archive.string() + ".tmp"));
  tracker.finish();
  EXPECT_TRUE(std::filesystem::exists(archive));
  EXPECT_FALSE(std::filesystem::exists(archive.string() + ".tmp"));
  EXPECT_FALSE(std::filesystem::exists(dir / "logs"));  // COMET_OFFLINE_DIRECTORY wins

  // A tracker that goes unfinished completes its archive, as comet_ml does at exit.
  std::filesystem::path unfinished;
  {
    auto dropped = tracker_with(dir, {});
    dropped.start();
    dropped.log({{"loss", 0.25}}, 0);
    unfinished = dropped.archive_path();
  }
  EXPECT_TRUE(std::filesystem::exists(unfinished));
  EXPECT_FALSE(std::filesystem::exists(unfinished.string() + ".tmp"));
  EXPECT_NE(accel::testing::read_file(unfinished).find("\"customer_error_reported\": false"), std::string::npos);
  // One that goes while an exception unwinds records the error, for `comet upload` to report.
  std::filesystem::path crashed;
  try {
    auto dropped = tracker_with(dir, {});
    dropped.start();
    crashed = dropped.archive_path();
    throw std::runtime_error("training failed");
  } catch (const std::runtime_error&) {
  }
  const std::string crashed_bytes = accel::testing::read_file(crashed);
  EXPECT_NE(crashed_bytes.find("\"customer_error_reported\": true, \"customer_error_message\": \"Unexpected error"),
            std::string::npos);

  // Mode create names the archive by the key alone; a given key is used;
  // '~' is the home folder, as comet_ml expands it.
  const std::string key(40, 'a');
  auto created = tracker_with(dir, {{"COMET_START_MODE", "create"},
                                    {"COMET_EXPERIMENT_KEY", " " + key + " "},
                                    {"COMET_WORKSPACE", "team"},
                                    {"HOME", dir.path().string()},
                                    {"COMET_OFFLINE_DIRECTORY", "~/home-runs"}});
  created.start();
  created.finish();
  EXPECT_EQ(created.archive_path(), dir / "home-runs" / (key + ".zip"));
  // experiment.json is stored uncompressed: its text is in the archive as it is.
  const std::string bytes = accel::testing::read_file(created.archive_path());
  for (const std::string& field :
       {"\"offline_id\": \"" + key + "\"", std::string("\"workspace\": \"team\""),
        std::string("\"resume_strategy\": \"create\""), std::string("\"user_provided_experiment_key\": true"),
        std::string("\"project_name\": \"run\"")})
    EXPECT_NE(bytes.find(field), std::string::npos) << field;
}

// A disk that fills up, played by a file size limit (writes past it fail
// with EFBIG): log() reports the failure, and finish() leaves the archive
// under its temporary name rather than completing a broken one.
TEST(CometTracker, AFailedWriteLeavesTheArchiveIncomplete) {
  TempDir dir("comet");
  auto tracker = tracker_with(dir, {});
  tracker.start();
  tracker.flush();
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &before), 0);
  const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = before;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  for (int64_t step = 0; step < 200 && message.empty(); ++step) {
    try {
      tracker.log({{"loss", 1.0 / (step + 1)}}, step);
      tracker.flush();
    } catch (const std::runtime_error& e) {
      message = e.what();
    }
  }
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &before), 0);
  std::signal(SIGXFSZ, previous_handler);
  EXPECT_NE(message.find(".zip.tmp failed"), std::string::npos) << message;
  expect_error<std::runtime_error>([&] { tracker.finish(); }, {"incomplete", "not renamed", ".zip.tmp"});
  EXPECT_FALSE(std::filesystem::exists(tracker.archive_path()));
  EXPECT_TRUE(std::filesystem::exists(tracker.archive_path().string() + ".tmp"));
}

}  // namespace
