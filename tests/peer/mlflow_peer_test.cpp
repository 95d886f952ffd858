// accel's MLflow tracker against a real `mlflow server` from the .venv,
// started on a free loopback port: the run is read back with mlflow's own
// Python client and compared value by value. And the server gone or
// answering errors: training goes on and the failure is reported once,
// with the address.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "accel/accelerator.h"
#include "accel/tracking/http_client.h"
#include "accel/tracking/mlflow.h"
#include "accel_test_paths.h"
#include "support/environment.h"
#include "support/errors.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::expect_error;
using accel::testing::ScopedEnv;
using accel::testing::TempDir;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A loopback port nothing listens on (the kernel's pick, released).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t size = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  return ntohs(address.sin_port);
}

// A program in a process group of its own (setsid), ended with its
// children (mlflow server runs uvicorn under it) when this goes.
struct Background {
  pid_t pid = -1;
  ~Background() {
    if (pid <= 0) return;
    ::kill(-pid, SIGKILL);
    accel::testing::wait_for_exit(pid);
  }
};

bool answers(const std::string& uri, const std::string& path) {
  try {
    const auto address = accel::parse_http_uri(uri, "test");
    return accel::http_request(address, "GET", path, "", {}, std::chrono::seconds(5)).status == 200;
  } catch (const accel::HttpUnreachable&) {
    return false;
  }
}

// One `mlflow server` for the whole binary (it takes tens of seconds to
// start on a busy machine): a sqlite store in a folder of its own.
struct Server {
  TempDir dir{"mlflow_server"};
  Background process;
  std::string uri;
  std::string log;
};

const Server& server() {
  static const std::unique_ptr<Server> started = [] {
    auto s = std::make_unique<Server>();
    const int port = free_port();
    s->uri = "http://127.0.0.1:" + std::to_string(port);
    s->log = (s->dir / "server.log").string();
    s->process.pid = accel::testing::start_program(
        {"/usr/bin/setsid", accel::testing::venv_program("mlflow"), "server", "--host", "127.0.0.1", "--port",
         std::to_string(port), "--workers", "1", "--backend-store-uri", "sqlite:///" + (s->dir / "mlflow.db").string(),
         "--default-artifact-root", (s->dir / "artifacts").string()},
        s->log);
    const auto deadline = Clock::now() + std::chrono::seconds(240);
    while (!answers(s->uri, "/health") && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    return s;
  }();
  return *started;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST(MLflowPeer, MlflowsClientReadsBackEveryValue) {
  REQUIRE_PEERS("mlflow");
  const Server& s = server();
  ASSERT_TRUE(answers(s.uri, "/health")) << "mlflow server did not start:\n" << read_text(s.log);
  ScopedEnv env("MLFLOW_TRACKING_URI", s.uri);
  env.set("MLFLOW_TAGS", R"({"team": "nlp", "attempt": 2})");
  env.set("MLFLOW_EXPERIMENT_NAME", std::nullopt);
  env.set("MLFLOW_RUN_ID", std::nullopt);

  accel::TrackerConfig config = {{"lr", 0.003},   {"layers", int64_t{4}}, {"optimizer", "adamw"},
                                 {"fused", true}, {"tiny", 1e-05},        {"too_long", std::string(6001, 'x')}};
  for (int i = 0; i < 150; ++i) config.emplace_back("p" + std::to_string(1000 + i), int64_t{i});  // two batches
  const int64_t before = now_ms();
  std::string run_id;
  {
    accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"mlflow"}));
    acc.init_trackers("spirals", config);
    for (int64_t step = 0; step < 50; ++step)
      acc.log({{"loss", 1.0 / (step + 1)}, {"lr", 0.003 * (50 - step) / 50}}, step);
    acc.log({{"bad", kNan}, {"big", kInf}, {"small", -kInf}, {"note", "text is left out"}}, 50);
    accel::LogValues many;  // more than one call's 1000 metrics
    for (int i = 0; i < 1200; ++i) many.emplace_back("m" + std::to_string(10000 + i), i * 0.5);
    acc.log(many, 51);
    acc.log({{"loss", 0.01}});  // no step: the number of earlier log() calls
    auto tracker = std::dynamic_pointer_cast<accel::MLflowTracker>(acc.get_tracker("mlflow"));
    ASSERT_TRUE(tracker);
    tracker->flush();
    run_id = tracker->run_id();
    ASSERT_FALSE(run_id.empty());
    acc.end_training();
  }
  const int64_t after = now_ms();
  const json run = accel::testing::run_peer_script("mlflow_peer.py", {"read", s.uri, run_id});

  EXPECT_EQ(run["experiment"], "spirals");  // Accelerate: the project is the experiment
  EXPECT_EQ(run["experiment_tags"]["team"], "nlp");
  EXPECT_EQ(run["status"], "FINISHED");
  EXPECT_GE(run["start_time"].get<int64_t>(), before);
  EXPECT_LE(run["end_time"].get<int64_t>(), after);

  // Params: Python's str() of each value; the one over 6000 characters left out.
  const json& params = run["params"];
  EXPECT_EQ(params.size(), 155u) << params.dump();
  EXPECT_EQ(params["lr"], "0.003");
  EXPECT_EQ(params["layers"], "4");
  EXPECT_EQ(params["optimizer"], "adamw");
  EXPECT_EQ(params["fused"], "True");
  EXPECT_EQ(params["tiny"], "1e-05");
  EXPECT_FALSE(params.contains("too_long"));
  for (int i = 0; i < 150; ++i) EXPECT_EQ(params["p" + std::to_string(1000 + i)], std::to_string(i));

  // Tags: MLFLOW_TAGS' (str() of each) and those mlflow's client adds.
  EXPECT_EQ(run["tags"]["team"], "nlp");
  EXPECT_EQ(run["tags"]["attempt"], "2");
  EXPECT_EQ(run["tags"]["mlflow.source.type"], "LOCAL");
  EXPECT_TRUE(run["tags"].contains("mlflow.user"));

  // Metrics: every step's value, at its step, stamped within the run.
  const json& metrics = run["metrics"];
  ASSERT_EQ(metrics["loss"].size(), 51u);
  for (int step = 0; step < 50; ++step) {
    EXPECT_EQ(metrics["loss"][step][0], step);
    EXPECT_DOUBLE_EQ(metrics["loss"][step][1].get<double>(), 1.0 / (step + 1));  // float64 all the way
    EXPECT_DOUBLE_EQ(metrics["lr"][step][1].get<double>(), 0.003 * (50 - step) / 50);
    EXPECT_GE(metrics["loss"][step][2].get<int64_t>(), before);
    EXPECT_LE(metrics["loss"][step][2].get<int64_t>(), after);
  }
  EXPECT_EQ(metrics["loss"][50], json({52, 0.01, metrics["loss"][50][2]}));
  // Non-finite values as the Python client sends them ("NaN", "Infinity"):
  // the sqlite store keeps NaN and clamps infinities to the largest double.
  EXPECT_EQ(metrics["bad"][0][1], "nan");
  EXPECT_EQ(metrics["big"][0][1].get<double>(), std::numeric_limits<double>::max());
  EXPECT_EQ(metrics["small"][0][1].get<double>(), -std::numeric_limits<double>::max());
  EXPECT_FALSE(metrics.contains("note"));  // MLflow's metrics are numbers, as in Accelerate
  for (int i = 0; i < 1200; ++i) {
    const json& m = metrics["m" + std::to_string(10000 + i)];
    ASSERT_EQ(m.size(), 1u) << i;
    EXPECT_EQ(m[0][0], 51);
    EXPECT_EQ(m[0][1].get<double>(), i * 0.5);
  }
  EXPECT_EQ(metrics.size(), 2u + 3u + 1200u);
}

TEST(MLflowPeer, ARunLeftByAnExceptionIsFailedAndMLFLOW_RUN_IDResumesIt) {
  REQUIRE_PEERS("mlflow");
  const Server& s = server();
  ASSERT_TRUE(answers(s.uri, "/health")) << "mlflow server did not start:\n" << read_text(s.log);
  ScopedEnv env("MLFLOW_TRACKING_URI", s.uri);
  env.set("MLFLOW_EXPERIMENT_NAME", "chosen-by-env");  // wins over the project name, as in Accelerate
  env.set("MLFLOW_TAGS", std::nullopt);
  env.set("MLFLOW_RUN_ID", std::nullopt);
  std::string run_id;
  try {
    accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"mlflow"}));
    acc.init_trackers("spirals");
    acc.log({{"loss", 1.0}}, 0);
    auto tracker = std::dynamic_pointer_cast<accel::MLflowTracker>(acc.get_tracker("mlflow"));
    tracker->flush();
    run_id = tracker->run_id();
    throw std::runtime_error("the training step failed");  // no end_training: the run ends as the stack unwinds
  } catch (const std::runtime_error&) {
  }
  ASSERT_FALSE(run_id.empty());
  json run = accel::testing::run_peer_script("mlflow_peer.py", {"read", s.uri, run_id});
  EXPECT_EQ(run["experiment"], "chosen-by-env");
  EXPECT_EQ(run["status"], "FAILED");

  // MLFLOW_RUN_ID: the same run goes on (RUNNING again, then FINISHED).
  env.set("MLFLOW_RUN_ID", run_id);
  {
    accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"mlflow"}));
    acc.init_trackers("spirals");
    acc.log({{"loss", 0.5}}, 1);
    acc.end_training();
  }
  run = accel::testing::run_peer_script("mlflow_peer.py", {"read", s.uri, run_id});
  EXPECT_EQ(run["status"], "FINISHED");
  ASSERT_EQ(run["metrics"]["loss"].size(), 2u);
  EXPECT_EQ(run["metrics"]["loss"][1][1], 0.5);
}

TEST(MLflowPeer, AServerThatIsDownIsReportedOnceAndTrainingGoesOn) {
  const std::string uri = "http://127.0.0.1:" + std::to_string(free_port());  // nothing listens
  ScopedEnv env("MLFLOW_TRACKING_URI", uri);
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"mlflow"}));
  const auto start = Clock::now();
  ::testing::internal::CaptureStderr();
  acc.init_trackers("spirals", {{"lr", 0.1}});  // the run's creation is queued, not waited for
  for (int64_t step = 0; step < 200; ++step) {
    acc.log({{"loss", 1.0 / (step + 1)}}, step);
    if (step == 100) std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the sender has failed by now
  }
  acc.end_training();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5.0);
  EXPECT_EQ(count(err, "\"mlflow\" failed"), 1u) << err;
  EXPECT_NE(err.find(uri), std::string::npos) << err;
  EXPECT_NE(err.find("Connection refused"), std::string::npos) << err;
}

TEST(MLflowPeer, AServerAnsweringErrorsIsReportedOnceAndTrainingGoesOn) {
  REQUIRE_PEERS("http.server");
  TempDir dir("mlflow_failing");
  Background failing;
  failing.pid =
      accel::testing::start_program({"/usr/bin/setsid", ACCEL_PYTHON, accel::testing::peer_script("mlflow_peer.py"),
                                     "failing_server", (dir / "port").string()},
                                    dir / "server.log");
  ASSERT_TRUE(accel::testing::wait_for_files({dir / "port"}, std::chrono::seconds(60)))
      << read_text(dir / "server.log");
  const std::string uri = "http://127.0.0.1:" + read_text(dir / "port");
  ScopedEnv env("MLFLOW_TRACKING_URI", uri);
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"mlflow"}));
  ::testing::internal::CaptureStderr();
  acc.init_trackers("spirals", {{"lr", 0.1}});
  for (int64_t step = 0; step < 20; ++step) {
    acc.log({{"loss", 1.0 / (step + 1)}}, step);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  acc.end_training();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count(err, "\"mlflow\" failed"), 1u) << err;
  EXPECT_NE(err.find(uri), std::string::npos) << err;
  EXPECT_NE(err.find("answered 500"), std::string::npos) << err;
  EXPECT_NE(err.find("the store is broken"), std::string::npos) << err;
}

TEST(MLflowPeer, SettingsThatCannotWorkStopInitTrackers) {
  accel::Accelerator acc(accel::AcceleratorOptions().cpu(true).log_with({"mlflow"}));
  auto init = [&] { acc.init_trackers("spirals"); };
  {
    ScopedEnv env("MLFLOW_TRACKING_URI", std::nullopt);
    expect_error<std::runtime_error>(init, {"\"mlflow\" could not start", "MLFLOW_TRACKING_URI", "mlflow server"});
  }
  for (const std::string uri : {"https://mlflow.example.com", "sqlite:///mlflow.db", "file:./mlruns"}) {
    ScopedEnv env("MLFLOW_TRACKING_URI", uri);
    expect_error<std::runtime_error>(init, {"\"" + uri + "\"", "http://"});
  }
  ScopedEnv env("MLFLOW_TRACKING_URI", "http://127.0.0.1:1");
  env.set("MLFLOW_TAGS", "[1, 2]");
  expect_error<std::runtime_error>(init, {"MLFLOW_TAGS", "JSON object", "[1, 2]"});
}

}  // namespace
