#pragma once
// The lines of a Comet offline experiment's messages.json and its
// experiment.json, encoded as comet_ml 3.58 writes them (its
// OfflineMessageHandler: json.dump(sort_keys=True, separators=(",", ":"),
// ensure_ascii) of {"payload": ..., "type": ...}, one message a line).
// Private to the library; the CometTracker decides what to send, these
// functions only spell it.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "accel/tracking/tracker.h"

namespace accel::comet {

/// comet_ml's limits: a longer key or text value is cut to this many
/// characters (code points), its end replaced by kTruncated.
constexpr size_t kMaxKeyLength = 100, kMaxValueLength = 1000;
constexpr std::string_view kTruncated = " [truncated]";

/// `text` cut as comet_ml's convert_to_string_truncated cuts it.
std::string truncate(const std::string& text, size_t max_characters);

/// Python's repr() of a finite float, which json.dumps writes: the
/// shortest digits that read back to `x`, in positional form from 1e-4 up
/// to below 1e16 ("0.0001", "1000000000000000.0"), else "1e-05", "1e+16".
std::string python_float(double x);
/// A float as comet_ml stores a metric or parameter value: NaN and the
/// infinities as the strings "NaN", "Infinity", "-Infinity"
/// (fix_special_floats), since its JSON has no such numbers.
std::string float_json(double x);
/// A string as json.dumps(ensure_ascii=True) writes it: quotes, backslash
/// and control characters escaped, everything past ASCII as \uXXXX
/// (surrogate pairs above U+FFFF). Bytes that are not UTF-8 become U+FFFD.
std::string string_json(std::string_view text);

/// A metric's value: an integer stays an integer, as in Python.
using MetricValue = std::variant<int64_t, double>;

/// Each message's header: its place in the file (from 1) and when it was
/// made, in milliseconds since the epoch (comet_ml's local_timestamp).
struct Stamp {
  int64_t message_id = 0;
  int64_t timestamp_ms = 0;
};

/// A "metric_msg": `name` = `value` at `step` (null: none set yet); no epoch.
std::string metric_line(const Stamp& stamp, const std::string& name, const MetricValue& value,
                        std::optional<int64_t> step);
/// A parameter's value as a parameter_msg holds it (text cut to kMaxValueLength).
std::string config_value_json(const ConfigValue& value);
/// A "parameter_msg" of source "manual" (what log_parameters and set_step
/// send); `value_json` from config_value_json.
std::string parameter_line(const Stamp& stamp, const std::string& name, const std::string& value_json,
                           std::optional<int64_t> step);
/// A "log_other" (the Other tab): `value_json` is already JSON. log_other
/// messages carry no timestamp.
std::string log_other_line(int64_t message_id, const std::string& key, const std::string& value_json);

/// experiment.json: the experiment's identity and times, written last.
struct ExperimentFile {
  std::string offline_id;    // the experiment key
  std::string project_name;  // Accelerate's project_name
  std::optional<std::string> workspace;
  int64_t start_time_ms = 0, stop_time_ms = 0;
  std::string resume_strategy;  // comet_ml.start's mode: get_or_create, create or get
  bool user_provided_experiment_key = false;
  /// Set when the program failed: `comet upload` then marks the experiment
  /// as having met an error, with this message.
  std::optional<std::string> customer_error_message;
};
/// As comet_ml's write_experiment_meta_file: json.dump's default
/// separators, its fields in its order, no tags, comet_start_sourced
/// (Accelerate starts runs through comet_ml.start).
std::string experiment_json(const ExperimentFile& file);

}  // namespace accel::comet
