#include "accel/tracking/mlflow_requests.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <variant>

#include "accel/launch/value.h"
#include "accel/util/check.h"

namespace accel::mlflow {
namespace {

nlohmann::json key_values(const std::vector<KeyValue>& items, size_t begin, size_t end) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = begin; i < std::min(end, items.size()); ++i)
    out.push_back({{"key", items[i].first}, {"value", items[i].second}});
  return out;
}

nlohmann::json metric_list(const std::vector<Metric>& metrics, size_t begin, size_t end) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = begin; i < std::min(end, metrics.size()); ++i) {
    const Metric& m = metrics[i];
    out.push_back({{"key", m.key}, {"value", double_json(m.value)}, {"timestamp", m.timestamp_ms}, {"step", m.step}});
  }
  return out;
}

nlohmann::json body(const std::string& run_id, nlohmann::json metrics, nlohmann::json params, nlohmann::json tags) {
  return {
      {"run_id", run_id}, {"metrics", std::move(metrics)}, {"params", std::move(params)}, {"tags", std::move(tags)}};
}

// posixpath.normpath's answer differs from the name (or is ".", or leaves
// the root): MLflow refuses such names, which a file store would confuse.
bool normalizes_elsewhere(const std::string& name) {
  if (name.empty() || name[0] == '/') return true;
  if (name == "." || name.rfind("..", 0) == 0) return true;
  if (name.back() == '/' || name.find("//") != std::string::npos) return true;
  size_t at = 0;
  while (at <= name.size()) {
    const size_t next = std::min(name.find('/', at), name.size());
    const std::string part = name.substr(at, next - at);
    if (part == "." || part == "..") return true;
    at = next + 1;
  }
  return false;
}

}  // namespace

std::vector<nlohmann::json> log_batch_bodies(const std::string& run_id, const std::vector<Metric>& metrics,
                                             const std::vector<KeyValue>& params, const std::vector<KeyValue>& tags) {
  std::vector<nlohmann::json> bodies;
  size_t next_metric = 0;
  const size_t rounds = std::max((params.size() + kMaxParamsTagsPerBatch - 1) / kMaxParamsTagsPerBatch,
                                 (tags.size() + kMaxParamsTagsPerBatch - 1) / kMaxParamsTagsPerBatch);
  for (size_t round = 0; round < rounds; ++round) {
    const size_t begin = round * kMaxParamsTagsPerBatch, end = begin + kMaxParamsTagsPerBatch;
    const size_t n_params = begin < params.size() ? std::min(end, params.size()) - begin : 0;
    const size_t n_tags = begin < tags.size() ? std::min(end, tags.size()) - begin : 0;
    const size_t room = std::min(kMaxEntitiesPerBatch - n_params - n_tags, kMaxMetricsPerBatch);
    bodies.push_back(body(run_id, metric_list(metrics, next_metric, next_metric + room), key_values(params, begin, end),
                          key_values(tags, begin, end)));
    next_metric = std::min(metrics.size(), next_metric + room);
  }
  for (; next_metric < metrics.size(); next_metric += kMaxMetricsPerBatch)
    bodies.push_back(body(run_id, metric_list(metrics, next_metric, next_metric + kMaxMetricsPerBatch),
                          nlohmann::json::array(), nlohmann::json::array()));
  return bodies;
}

nlohmann::json double_json(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  return value;
}

std::string param_text(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>)
          return v ? "True" : "False";
        else if constexpr (std::is_same_v<T, int64_t>)
          return std::to_string(v);
        else if constexpr (std::is_same_v<T, double>)
          return launch::python_float(v);
        else
          return v;
      },
      value);
}

std::optional<std::string> invalid_name(const std::string& name) {
  if (name.size() > kMaxKeyLength) return str("it is ", name.size(), " characters long; MLflow allows ", kMaxKeyLength);
  for (const unsigned char c : name) {
    // Python's \w also matches letters beyond ASCII: bytes of UTF-8 pass here.
    const bool ok =
        std::isalnum(c) || c >= 0x80 || c == '_' || c == '-' || c == '.' || c == ' ' || c == ':' || c == '/';
    if (!ok)
      return "names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), "
             "colons (:) and slashes (/)";
  }
  if (normalizes_elsewhere(name))
    return "a name that a path would normalize to another (a leading or doubled '/', '.' or '..' parts) "
           "is refused by MLflow";
  return std::nullopt;
}

std::string error_text(const std::string& body) {
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_object() && json.contains("message"))
    return str(json.value("error_code", std::string("ERROR")), ": ",
               json["message"].is_string() ? json["message"].get<std::string>() : json["message"].dump());
  return body.substr(0, 200);
}

}  // namespace accel::mlflow
