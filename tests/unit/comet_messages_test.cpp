// The spelling of Comet's offline messages: Python's float repr and
// json.dumps(ensure_ascii) strings, comet_ml's truncation and special
// floats, and the message lines. (The comet_ml peer test compares the same
// functions with Python itself over many random values.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "accel/tracking/comet_messages.h"

namespace {

namespace comet = accel::comet;
using nlohmann::json;

TEST(CometMessages, FloatsAreWrittenAsPythonsRepr) {
  // Python 3.11: repr(x) for each x.
  const std::pair<double, const char*> cases[] = {
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {1.0, "1.0"},
      {0.1, "0.1"},
      {1e-4, "0.0001"},
      {1e-5, "1e-05"},
      {0.00012345, "0.00012345"},
      {1e15, "1000000000000000.0"},
      {9999999999999998.0, "9999999999999998.0"},
      {1e16, "1e+16"},
      {123456789012345678.0, "1.2345678901234568e+17"},
      {1.5e300, "1.5e+300"},
      {-2.5e-300, "-2.5e-300"},
      {5e-324, "5e-324"},
      {std::numeric_limits<double>::max(), "1.7976931348623157e+308"},
      {1.0 / 3, "0.3333333333333333"},
      {1234.5, "1234.5"},
      {-7.0, "-7.0"},
  };
  for (const auto& [x, repr] : cases) EXPECT_EQ(comet::python_float(x), repr) << x;
  EXPECT_EQ(comet::float_json(std::nan("")), "\"NaN\"");
  EXPECT_EQ(comet::float_json(std::numeric_limits<double>::infinity()), "\"Infinity\"");
  EXPECT_EQ(comet::float_json(-std::numeric_limits<double>::infinity()), "\"-Infinity\"");
  EXPECT_EQ(comet::float_json(0.25), "0.25");
}

TEST(CometMessages, EveryFloatReadsBackBitForBit) {
  std::mt19937_64 random(11);
  for (int i = 0; i < 100000; ++i) {
    uint64_t bits = random();
    double x;
    std::memcpy(&x, &bits, sizeof x);
    if (!std::isfinite(x)) continue;
    const std::string text = comet::python_float(x);
    const double back = std::strtod(text.c_str(), nullptr);
    ASSERT_EQ(std::memcmp(&back, &x, sizeof x), 0) << text;
    // JSON reads it as the same number.
    ASSERT_EQ(json::parse(text).get<double>(), x) << text;
  }
}

TEST(CometMessages, StringsAreEscapedAsJsonDumpsWithEnsureAscii) {
  // Python: json.dumps('a"b\\c\n\t\x01\x7f é € 😀 \b\f\r')
  EXPECT_EQ(comet::string_json("a\"b\\c\n\t\x01\x7f é € 😀 \b\f\r"),
            R"("a\"b\\c\n\t\u0001\u007f \u00e9 \u20ac \ud83d\ude00 \b\f\r")");
  // Bytes that are not UTF-8 (a lone continuation byte, an overlong '/', a
  // cut sequence) each become U+FFFD; what follows is kept.
  EXPECT_EQ(comet::string_json("a\x80z\xC0\xAFz\xE2\x82"), R"("a\ufffdz\ufffd\ufffdz\ufffd\ufffd")");
  // Whatever it writes, JSON reads back as the UTF-8 it was given.
  const std::string text = "ünïcode 😀 \"quoted\"\n";
  EXPECT_EQ(json::parse(comet::string_json(text)).get<std::string>(), text);
}

TEST(CometMessages, LongTextIsCutAsCometMlCutsIt) {
  EXPECT_EQ(comet::truncate("short", 100), "short");
  const std::string exactly(100, 'k');
  EXPECT_EQ(comet::truncate(exactly, 100), exactly);
  const std::string cut = comet::truncate(std::string(101, 'k'), 100);
  EXPECT_EQ(cut, std::string(88, 'k') + " [truncated]");
  // Characters, not bytes: 101 two-byte characters keep 88 of them.
  std::string wide;
  for (int i = 0; i < 101; ++i) wide += "é";
  std::string kept;
  for (int i = 0; i < 88; ++i) kept += "é";
  EXPECT_EQ(comet::truncate(wide, 100), kept + " [truncated]");
  EXPECT_EQ(comet::truncate("abcdefghij", 5), "abcde");  // shorter than the marker: cut only
}

TEST(CometMessages, LinesHoldSortedKeysWithoutSpaces) {
  EXPECT_EQ(comet::metric_line({21, 1796286678403}, "loss", 0.5, 0),
            R"({"payload":{"local_timestamp":1796286678403,"message_id":21,"metric":{"epoch":null,)"
            R"("metricName":"loss","metricValue":0.5,"step":0}},"type":"metric_msg"})");
  EXPECT_EQ(comet::metric_line({2, 5}, "count", int64_t{3}, std::nullopt),
            R"({"payload":{"local_timestamp":5,"message_id":2,"metric":{"epoch":null,)"
            R"("metricName":"count","metricValue":3,"step":null}},"type":"metric_msg"})");
  EXPECT_EQ(comet::metric_line({3, 5}, "x", std::numeric_limits<double>::infinity(), 1),
            R"({"payload":{"local_timestamp":5,"message_id":3,"metric":{"epoch":null,)"
            R"("metricName":"x","metricValue":"Infinity","step":1}},"type":"metric_msg"})");
  EXPECT_EQ(comet::parameter_line({19, 7}, "nanp", comet::config_value_json(std::nan("")), std::nullopt),
            R"({"payload":{"local_timestamp":7,"message_id":19,"param":{"paramName":"nanp",)"
            R"("paramValue":"NaN","source":"manual","step":null}},"type":"parameter_msg"})");
  EXPECT_EQ(comet::config_value_json(true), "true");
  EXPECT_EQ(comet::config_value_json(int64_t{3}), "3");
  EXPECT_EQ(comet::config_value_json(std::string("adamw")), "\"adamw\"");
  EXPECT_EQ(comet::log_other_line(23, "note", comet::string_json("hello")),
            R"({"payload":{"key":"note","message_id":23,"value":"hello"},"type":"log_other"})");
  // Every line is one JSON object whose keys are in sorted order.
  const json line = json::parse(comet::metric_line({1, 2}, "a", 1.0, 3));
  EXPECT_EQ(line["payload"]["metric"]["metricValue"], 1.0);
}

TEST(CometMessages, ExperimentFileAsCometMlWritesIt) {
  comet::ExperimentFile file;
  file.offline_id = "cb7b2bb7d3c6478cab14750209d2e721";
  file.project_name = "my-proj";
  file.start_time_ms = 1796286678096;
  file.stop_time_ms = 1796286680608;
  file.resume_strategy = "get_or_create";
  // What comet_ml 3.58.8 wrote for Accelerate's CometMLTracker offline.
  EXPECT_EQ(comet::experiment_json(file),
            R"({"offline_id": "cb7b2bb7d3c6478cab14750209d2e721", "project_name": "my-proj", )"
            R"("start_time": 1796286678096, "stop_time": 1796286680608, "tags": [], "workspace": null, )"
            R"("resume_strategy": "get_or_create", "customer_error_reported": false, )"
            R"("customer_error_message": null, "user_provided_experiment_key": false, "comet_start_sourced": true})");
  file.workspace = "team";
  file.user_provided_experiment_key = true;
  file.customer_error_message = "failed: \"x\"";
  const json parsed = json::parse(comet::experiment_json(file));
  EXPECT_EQ(parsed["workspace"], "team");
  EXPECT_EQ(parsed["user_provided_experiment_key"], true);
  EXPECT_EQ(parsed["customer_error_reported"], true);
  EXPECT_EQ(parsed["customer_error_message"], "failed: \"x\"");
}

}  // namespace
