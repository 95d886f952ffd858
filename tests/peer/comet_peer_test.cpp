// accel's offline Comet experiments, read back by comet_ml's own code
// (`comet offline`, and the offline sender that `comet upload` runs, up to
// the requests it would send), and compared with the archive Accelerate's
// CometMLTracker writes through comet_ml for the same run.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/tracking/comet.h"
#include "accel/tracking/comet_messages.h"
#include "accel/tracking/leveldb_log.h"
#include "accel/tracking/zip_writer.h"
#include "support/environment.h"
#include "support/files.h"
#include "support/peers.h"
#include "support/temp_dir.h"

namespace {

using accel::testing::run_peer_script;
using accel::testing::TempDir;
using nlohmann::json;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

json value_json(const auto& value) {
  using T = std::decay_t<decltype(value)>;
  if constexpr (std::is_same_v<T, double>) {
    if (!std::isfinite(value)) return {{"float", std::isnan(value) ? "nan" : value > 0 ? "inf" : "-inf"}};
    return value;
  } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
    return value;
  } else if constexpr (std::is_same_v<T, std::map<std::string, double>>) {
    json out = json::object();
    for (const auto& [k, x] : value) out[k] = value_json(x);
    return out;
  } else {
    return nullptr;  // a tensor: not given to Python
  }
}

// Comet's own messages that accel has no counterpart for (system metrics,
// the modules imported before comet_ml, the script's command line as
// parameters of source "cli", console output, environment).
bool automatic(const json& message) {
  const std::string type = message["type"];
  if (type != "metric_msg" && type != "parameter_msg" && type != "log_other") return true;
  const json& p = message["payload"];
  const std::string name = type == "metric_msg"      ? p["metric"]["metricName"].get<std::string>()
                           : type == "parameter_msg" ? p["param"]["paramName"].get<std::string>()
                                                     : p["key"].get<std::string>();
  if (type == "parameter_msg" && p["param"]["source"] == "cli") return true;
  return name.rfind("sys.", 0) == 0 || name == "process duration";
}

json sender_params(const json& read) {
  json out = json::array();
  for (const auto& p : read["offline_sender"]["params"])
    if (p["source"] != "cli") out.push_back(p);
  return out;
}

// The lines with the message ids, times and keys that differ between two runs replaced.
std::vector<std::string> comparable(const json& read) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < read["lines"].size(); ++i) {
    if (automatic(read["messages"][i])) continue;
    std::string line = read["lines"][i];
    line = std::regex_replace(line, std::regex("\"local_timestamp\":[0-9]+"), "\"local_timestamp\":T");
    line = std::regex_replace(line, std::regex("\"message_id\":[0-9]+"), "\"message_id\":N");
    lines.push_back(line);
  }
  return lines;
}

json sender_metrics(const json& read) {
  json out = json::array();
  for (auto m : read["offline_sender"]["metrics"]) {
    if (m["name"].get<std::string>().rfind("sys.", 0) == 0 || m["name"] == "process duration") continue;
    m.erase("id");
    out.push_back(m);
  }
  return out;
}

// What comet_ml logged at ERROR or raised while reading (NaN metrics draw
// WARNINGs from its sampler, which is how comet_ml treats them).
std::vector<std::string> failures(const json& reader) {
  std::vector<std::string> out;
  for (const auto& e : reader["errors"])
    if (e[0] != "WARNING") out.push_back(e[1]);
  if (reader.contains("failures"))
    for (const auto& f : reader["failures"]) out.push_back(f.dump());
  return out;
}

TEST(CometPeer, TheSameRunGivesCometMlsArchiveAndReadsBack) {
  REQUIRE_PEERS("comet_ml", "accelerate");
  TempDir dir("comet");
  // comet_ml's settings as they are by default, for accel and for the Python run.
  accel::testing::ScopedEnv env;
  for (const char* name : {"COMET_OFFLINE_DIRECTORY", "COMET_START_ONLINE", "COMET_START_MODE", "COMET_EXPERIMENT_KEY",
                           "COMET_WORKSPACE", "COMET_PROJECT_NAME"})
    env.set(name, std::nullopt);
  const std::string long_text(1500, 'v');
  const std::string long_key = "k" + std::string(130, 'e') + "y";
  const accel::TrackerConfig config = {{"lr", 0.003},         {"layers", int64_t{4}}, {"optimizer", "adamw"},
                                       {"fused", true},       {"tiny", 1e-05},        {"big_number", 1e16},
                                       {"nan_param", kNan},   {"ünïcode", "é \"q\""}, {"long", long_text},
                                       {long_key, int64_t{1}}};
  struct Log {
    accel::LogValues values;
    std::optional<int64_t> step;
  };
  std::vector<Log> logs;
  for (int64_t step = 0; step < 5; ++step) logs.push_back({{{"train_loss", 1.0 / (step + 1)}, {"count", step}}, step});
  logs.push_back({{{"note", "text with \"quotes\", é and 😀"}, {"weights", torch::arange(10)}}, std::nullopt});
  logs.push_back({{{"pair", std::map<std::string, double>{{"b", 2.0}, {"a", 1.5}}}}, 5});
  logs.push_back({{{"bad", kNan}, {"big", kInf}, {"small", -kInf}}, 6});
  logs.push_back({{{"train_loss", 0.01}}, 5});  // back to step 5: curr_step is sent again
  logs.push_back({{{"x", int64_t{1}}, {long_key, 2.5}}, 5});
  logs.push_back({{{"after", 1e-07}}, std::nullopt});

  std::filesystem::path ours;
  std::string key;
  {
    accel::Accelerator acc(accel::AcceleratorOptions()
                               .cpu(true)
                               .log_with({"comet_ml"})
                               .project_config(accel::ProjectConfiguration().project_dir(dir / "accel")));
    acc.init_trackers("accel-comet", config);
    for (const auto& log : logs) acc.log(log.values, log.step);
    auto tracker = std::dynamic_pointer_cast<accel::CometTracker>(acc.get_tracker("comet_ml"));
    ASSERT_TRUE(tracker);
    ours = tracker->archive_path();
    key = tracker->experiment_key();
    acc.end_training();
  }
  EXPECT_EQ(ours.parent_path(), dir / "accel");  // logging_dir, as COMET_OFFLINE_DIRECTORY is unset

  json sequence = {{"project", "accel-comet"}, {"config", json::array()}, {"logs", json::array()}};
  for (const auto& [k, v] : config)
    sequence["config"].push_back({k, std::visit([](const auto& x) { return value_json(x); }, v)});
  for (const auto& log : logs) {
    json values = json::array();
    for (const auto& [k, v] : log.values)
      if (!std::holds_alternative<at::Tensor>(v))
        values.push_back({k, std::visit([](const auto& x) { return value_json(x); }, v)});
    sequence["logs"].push_back({{"values", values}, {"step", log.step ? json(*log.step) : json(nullptr)}});
  }
  std::ofstream(dir / "sequence.json") << sequence.dump();
  std::filesystem::create_directories(dir / "python");
  const json ran =
      run_peer_script("comet_peer.py", {"run", (dir / "sequence.json").string(), (dir / "python").string()});
  ASSERT_EQ(ran["archives"].size(), 1u) << ran.dump();
  const auto theirs_path = dir / "python" / ran["archives"][0].get<std::string>();

  // Python's zipfile: every entry's CRC-32 checks, stored as comet_ml stores them.
  const json zip = run_peer_script("comet_peer.py", {"zip", ours.string()});
  EXPECT_EQ(zip["bad"], nullptr) << zip.dump();
  EXPECT_EQ(zip["entries"]["messages.json"]["method"], 0);
  EXPECT_EQ(zip["entries"]["experiment.json"]["method"], 0);

  const json mine = run_peer_script("comet_peer.py", {"read", ours.string()});
  const json theirs = run_peer_script("comet_peer.py", {"read", theirs_path.string()});
  ASSERT_FALSE(mine.contains("raw_error")) << mine["raw_error"];
  EXPECT_EQ(mine["names"], json::parse(R"(["experiment.json", "messages.json"])"));

  // Message for message, byte for byte (but ids and times), as Accelerate's tracker through comet_ml.
  EXPECT_EQ(comparable(mine), comparable(theirs));
  // experiment.json likewise, but the key and the times.
  auto normalized = [](std::string text) {
    text = std::regex_replace(text, std::regex("\"offline_id\": \"[0-9a-f]+\""), "\"offline_id\": K");
    return std::regex_replace(text, std::regex("_time\": [0-9]+"), "_time\": T");
  };
  EXPECT_EQ(normalized(mine["experiment_text"]), normalized(theirs["experiment_text"]));

  // `comet offline --csv`: comet_ml's viewer reads every message.
  const json& viewer = mine["comet_offline"];
  EXPECT_TRUE(failures(viewer).empty()) << viewer["errors"].dump(1);
  std::map<std::string, std::string> params;
  std::vector<std::pair<std::string, std::string>> metric_rows;
  for (const auto& row : viewer["rows"]) {
    EXPECT_EQ(row[1], "accel-comet");
    EXPECT_EQ(row[2], key);
    if (row[3] != "detail") continue;
    if (row[4] == "param") params[row[5]] = row[6];
    if (row[4] == "metric") metric_rows.emplace_back(row[5], row[6]);
  }
  EXPECT_EQ(params["lr"], "0.003");
  EXPECT_EQ(params["layers"], "4");
  EXPECT_EQ(params["fused"], "True");
  EXPECT_EQ(params["nan_param"], "NaN");
  EXPECT_EQ(params["long"], std::string(988, 'v') + " [truncated]");
  EXPECT_EQ(params["curr_step"], "5");
  ASSERT_GE(metric_rows.size(), 5u);
  EXPECT_EQ(metric_rows[0], (std::pair<std::string, std::string>{"train_loss", "1.0"}));

  // The offline sender of `comet upload`: what it would send to Comet.
  const json& sender = mine["offline_sender"];
  EXPECT_TRUE(failures(sender).empty()) << sender["errors"].dump(1) << sender["failures"].dump(1);
  EXPECT_EQ(sender["experiment"]["id"], key);
  EXPECT_EQ(sender["experiment"]["project"], "accel-comet");
  EXPECT_EQ(sender["experiment"]["workspace"], nullptr);
  EXPECT_EQ(sender["experiment"]["resume_strategy"], "get_or_create");
  EXPECT_EQ(sender["experiment"]["customer_error_reported"], false);
  EXPECT_LE(sender["experiment"]["start_time"].get<int64_t>(), sender["experiment"]["stop_time"].get<int64_t>());
  EXPECT_EQ(sender_metrics(mine), sender_metrics(theirs));
  const json metrics = sender_metrics(mine);
  for (int64_t step = 0; step < 5; ++step) {
    const json& m = metrics[2 * step];
    EXPECT_EQ(m["name"], "train_loss");
    EXPECT_EQ(m["value"].get<double>(), 1.0 / (step + 1));  // bit for bit
    EXPECT_EQ(m["step"], step);
    EXPECT_EQ(metrics[2 * step + 1]["value"], step);
  }
  auto find = [&](const std::string& name) {
    for (const auto& m : metrics)
      if (m["name"] == name) return m;
    return json();
  };
  EXPECT_EQ(find("a"), json::parse(R"({"name": "a", "value": 1.5, "step": 5})"));  // a map's entries, unprefixed
  EXPECT_EQ(find("bad")["value"], "NaN");
  EXPECT_EQ(find("big")["value"], "Infinity");
  EXPECT_EQ(find("small")["value"], "-Infinity");
  EXPECT_EQ(find("bad")["step"], 6);
  EXPECT_EQ(find("after")["step"], 5);  // no step given: the current one
  EXPECT_EQ(find(long_key.substr(0, 88) + " [truncated]")["value"], 2.5);
  EXPECT_EQ(find("weights"), json());  // a tensor is left out, as Accelerate does
  json others = json::object();
  for (const auto& o : sender["others"]) others[o[0].get<std::string>()] = o[1];
  EXPECT_EQ(others["offline_experiment"], true);
  EXPECT_EQ(others["note"], "text with \"quotes\", é and 😀");
  EXPECT_EQ(sender_params(mine), sender_params(theirs));
  EXPECT_EQ(sender_params(mine).size(), 11u);  // the config's 10 and curr_step
}

TEST(CometPeer, ACorruptedArchiveIsRejectedByCometMl) {
  REQUIRE_PEERS("comet_ml");
  TempDir dir("comet");
  accel::CometTracker tracker("corrupt", dir.path(), accel::env_from_map({}));
  tracker.start();
  tracker.store_init_configuration({{"lr", 0.1}});
  for (int64_t step = 0; step < 20; ++step) tracker.log({{"loss", 1.0 / (step + 1)}}, step);
  tracker.finish();
  const std::string bytes = accel::testing::read_file(tracker.archive_path());
  const size_t data = bytes.find("{\"payload\"");
  ASSERT_NE(data, std::string::npos);

  // One byte of messages.json changed: its CRC-32 no longer checks.
  std::string flipped = bytes;
  flipped[data + 200] ^= 0x01;
  std::ofstream(dir / "flipped.zip", std::ios::binary) << flipped;
  // Cut short: no central directory.
  std::ofstream(dir / "cut.zip", std::ios::binary) << bytes.substr(0, bytes.size() / 2);

  const json zip = run_peer_script("comet_peer.py", {"zip", (dir / "flipped.zip").string()});
  EXPECT_EQ(zip["bad"], "messages.json") << zip.dump();
  for (const char* name : {"flipped.zip", "cut.zip"}) {
    const json read = run_peer_script("comet_peer.py", {"read", (dir / name).string()});
    EXPECT_TRUE(read.contains("raw_error")) << name;
    EXPECT_FALSE(failures(read["comet_offline"]).empty()) << name << ": comet offline read it";
    EXPECT_FALSE(failures(read["offline_sender"]).empty()) << name << ": the offline sender took it";
  }
  // A tracker that goes while an exception unwinds: the sender reads the error it will report.
  std::filesystem::path crashed;
  try {
    accel::CometTracker dropped("crashed", dir.path(), accel::env_from_map({}));
    dropped.start();
    crashed = dropped.archive_path();
    throw std::runtime_error("training failed");
  } catch (const std::runtime_error&) {
  }
  const json crashed_read = run_peer_script("comet_peer.py", {"read", crashed.string()});
  EXPECT_EQ(crashed_read["offline_sender"]["experiment"]["customer_error_reported"], true);
  EXPECT_NE(crashed_read["offline_sender"]["experiment"]["customer_error_message"].get<std::string>().find(
                "Unexpected error"),
            std::string::npos);

  // The archive as written reads clean.
  const json good = run_peer_script("comet_peer.py", {"read", tracker.archive_path().string()});
  EXPECT_TRUE(failures(good["comet_offline"]).empty()) << good["comet_offline"]["errors"].dump();
  EXPECT_TRUE(failures(good["offline_sender"]).empty()) << good["offline_sender"].dump();
  EXPECT_EQ(good["offline_sender"]["metrics"].size(), 20u);
}

TEST(CometPeer, ZipWriterArchivesReadWithPythonsZipfile) {
  REQUIRE_PEERS("comet_ml");
  TempDir dir("comet");
  std::mt19937 random(3);
  std::string big(300000, '\0');
  for (char& c : big) c = static_cast<char>(random());
  {
    accel::ZipWriter zip(dir / "a.zip");
    zip.add("empty", "");
    zip.begin_entry("dir/big.bin");
    for (size_t at = 0; at < big.size(); at += 70000) zip.write(std::string_view(big).substr(at, 70000));
    zip.end_entry();
    zip.add("ünïcode.txt", "é");
    zip.close();
  }
  const json read = run_peer_script("comet_peer.py", {"zip", (dir / "a.zip").string()});
  ASSERT_TRUE(read.contains("entries")) << read.dump();
  EXPECT_EQ(read["bad"], nullptr);  // testzip(): every CRC-32 checks
  const json& entries = read["entries"];
  ASSERT_EQ(entries.size(), 3u) << entries.dump();
  EXPECT_EQ(entries["empty"]["size"], 0);
  EXPECT_EQ(entries["dir/big.bin"]["size"], big.size());
  EXPECT_EQ(entries["dir/big.bin"]["crc"], accel::crc32(big));
  EXPECT_EQ(entries["ünïcode.txt"]["utf8"], true);
  EXPECT_EQ(entries["ünïcode.txt"]["size"], 2);
}

TEST(CometPeer, FloatsAreWrittenAsPythonWritesThem) {
  REQUIRE_PEERS("comet_ml");
  TempDir dir("comet");
  std::mt19937_64 random(5);
  std::ofstream out(dir / "floats.txt");
  int written = 0;
  auto put = [&](double x) {
    uint64_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(bits));
    out << hex << ' ' << accel::comet::python_float(x) << '\n';
    ++written;
  };
  for (int i = 0; i < 20000; ++i) {
    uint64_t bits = random();
    double x;
    std::memcpy(&x, &bits, sizeof x);
    if (std::isfinite(x)) put(x);
  }
  // Where the form changes: around 1e-4 and 1e16, and short decimals.
  for (int e = -8; e <= 20; ++e)
    for (double m : {1.0, 1.5, 9.999999999999998, 1.2345678901234567}) put(m * std::pow(10.0, e));
  for (int i = 0; i < 2000; ++i) put(static_cast<double>(random() % 100000) / 1000.0);
  out.close();
  const json checked = run_peer_script("comet_peer.py", {"floats", (dir / "floats.txt").string()});
  EXPECT_EQ(checked["count"], written);
  EXPECT_TRUE(checked["wrong"].empty()) << checked["wrong"].dump(1);
}

}  // namespace
