#pragma once
// The bodies of MLflow REST calls (/api/2.0/mlflow/...) and the checks
// mlflow's Python client makes before sending them, kept apart from the
// sending so that tests can check them without a server. Private to the
// library.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "accel/tracking/tracker.h"

namespace accel::mlflow {

// MLflow's limits (mlflow/utils/validation.py): a log-batch call carries at
// most 1000 metrics, 100 params and 100 tags, 1000 entities in all; a param
// value at most 6000 characters, a tag value 8000, a key 250.
constexpr size_t kMaxMetricsPerBatch = 1000;
constexpr size_t kMaxParamsTagsPerBatch = 100;
constexpr size_t kMaxEntitiesPerBatch = 1000;
constexpr size_t kMaxParamValueLength = 6000;
constexpr size_t kMaxTagValueLength = 8000;
constexpr size_t kMaxKeyLength = 250;

struct Metric {
  std::string key;
  double value = 0;
  int64_t timestamp_ms = 0;
  int64_t step = 0;
};
using KeyValue = std::pair<std::string, std::string>;

/// The bodies of the runs/log-batch calls that log these, split as
/// mlflow's client splits them: params and tags 100 at a time side by side,
/// each call filled up with metrics to 1000 entities, then the metrics left
/// 1000 at a time.
std::vector<nlohmann::json> log_batch_bodies(const std::string& run_id, const std::vector<Metric>& metrics,
                                             const std::vector<KeyValue>& params, const std::vector<KeyValue>& tags);

/// A metric value in protobuf's JSON mapping, as the Python client sends
/// it: a number, or the strings "NaN", "Infinity", "-Infinity".
nlohmann::json double_json(double value);

/// Python's str() of a config value, which is what MLflow stores as a
/// param: True, 42, 0.001, 1e-05, the text itself.
std::string param_text(const ConfigValue& value);

/// Why `name` cannot name a metric, param or tag (MLflow allows
/// alphanumerics, '_', '-', '.', ' ', ':' and '/', and no name that a path
/// would normalize to another), or nothing when it can.
std::optional<std::string> invalid_name(const std::string& name);

/// An MLflow error answer's "error_code: message", or the body's start
/// when it is not one.
std::string error_text(const std::string& body);

}  // namespace accel::mlflow
