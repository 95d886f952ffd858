// trainer_state.json as Transformers writes it: every TrainerState field,
// keys sorted, two-space indent; log entries keep their "step" an integer.
#include "accel/trainer/trainer_state.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/atomic_file.h"
#include "accel/util/check.h"

namespace accel {

using json = nlohmann::json;

namespace {

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json metric_value(const std::string& key, double v) {
  if (key == "step" && v == std::floor(v)) return static_cast<int64_t>(v);
  if (!std::isfinite(v)) return json(nullptr);  // JSON has no NaN; Python would write NaN
  return v;
}

struct Reader {
  const json& j;
  const std::string& source;
  const json& at(const char* key) const {
    ACCEL_CHECK_ARG(j.contains(key), source, ": trainer state lacks \"", key, "\"");
    return j.at(key);
  }
  [[noreturn]] void bad(const char* key, const char* expected) const {
    fail<std::invalid_argument>(source, ": trainer state \"", key, "\" is ", j.at(key).dump(), ", expected ", expected);
  }
  int64_t integer(const char* key) const {
    const json& v = at(key);
    if (!v.is_number_integer()) bad(key, "an integer");
    return v.get<int64_t>();
  }
  double real(const char* key) const {
    const json& v = at(key);
    if (!v.is_number()) bad(key, "a number");
    return v.get<double>();
  }
  bool boolean(const char* key) const {
    const json& v = at(key);
    if (!v.is_boolean()) bad(key, "true or false");
    return v.get<bool>();
  }
  template <class T>
  std::optional<T> optional(const char* key) const {
    if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
    const json& v = j.at(key);
    if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) bad(key, "a string or null");
    } else if constexpr (std::is_integral_v<T>) {
      if (!v.is_number_integer()) bad(key, "an integer or null");
    } else {
      if (!v.is_number()) bad(key, "a number or null");
    }
    return v.get<T>();
  }
};

}  // namespace

std::string TrainerState::to_json() const {
  json history = json::array();
  for (const auto& entry : log_history) {
    json e = json::object();
    for (const auto& [k, v] : entry) e[k] = metric_value(k, v);
    history.push_back(std::move(e));
  }
  json callbacks = json::object();
  for (const auto& [name, text] : stateful_callbacks) callbacks[name] = json::parse(text);
  json j = {{"epoch", epoch},
            {"global_step", global_step},
            {"max_steps", max_steps},
            {"logging_steps", logging_steps},
            {"eval_steps", eval_steps},
            {"save_steps", save_steps},
            {"train_batch_size", opt(train_batch_size)},
            {"num_train_epochs", num_train_epochs},
            {"num_input_tokens_seen", num_input_tokens_seen},
            {"total_flos", total_flos},
            {"log_history", history},
            {"best_metric", opt(best_metric)},
            {"best_global_step", opt(best_global_step)},
            {"best_model_checkpoint", opt(best_model_checkpoint)},
            {"is_local_process_zero", is_local_process_zero},
            {"is_world_process_zero", is_world_process_zero},
            {"is_hyper_param_search", is_hyper_param_search},
            {"trial_name", nullptr},
            {"trial_params", nullptr},
            {"stateful_callbacks", callbacks}};
  return j.dump(2) + "\n";  // nlohmann's objects are sorted by key, as sort_keys=True
}

TrainerState TrainerState::from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail<std::invalid_argument>(source, ": not valid JSON (", e.what(), ")");
  }
  ACCEL_CHECK_ARG(j.is_object(), source, ": expected a JSON object");
  const Reader r{j, source};
  TrainerState s;
  s.epoch = r.real("epoch");
  s.global_step = r.integer("global_step");
  s.max_steps = r.integer("max_steps");
  s.logging_steps = r.integer("logging_steps");
  s.eval_steps = r.integer("eval_steps");
  s.save_steps = r.integer("save_steps");
  s.train_batch_size = r.optional<int64_t>("train_batch_size");
  s.num_train_epochs = r.integer("num_train_epochs");
  s.num_input_tokens_seen = r.integer("num_input_tokens_seen");
  s.total_flos = r.real("total_flos");
  const json& history = r.at("log_history");
  ACCEL_CHECK_ARG(history.is_array(), source, ": log_history is not a list");
  for (const auto& e : history) {
    ACCEL_CHECK_ARG(e.is_object(), source, ": a log_history entry is ", e.dump().substr(0, 80), ", expected an object");
    Metrics m;
    for (const auto& [k, v] : e.items()) {
      if (v.is_null()) {
        m[k] = std::nan("");
        continue;
      }
      ACCEL_CHECK_ARG(v.is_number(), source, ": log_history value \"", k, "\" is ", v.dump(), ", expected a number");
      m[k] = v.get<double>();
    }
    s.log_history.push_back(std::move(m));
  }
  s.best_metric = r.optional<double>("best_metric");
  s.best_global_step = r.optional<int64_t>("best_global_step");
  s.best_model_checkpoint = r.optional<std::string>("best_model_checkpoint");
  s.is_local_process_zero = r.boolean("is_local_process_zero");
  s.is_world_process_zero = r.boolean("is_world_process_zero");
  s.is_hyper_param_search = r.boolean("is_hyper_param_search");
  if (j.contains("stateful_callbacks") && j["stateful_callbacks"].is_object())
    for (const auto& [name, v] : j["stateful_callbacks"].items()) s.stateful_callbacks[name] = v.dump();
  return s;
}

TrainerState TrainerState::load(const std::filesystem::path& path) {
  std::ifstream in(path);
  ACCEL_CHECK_ARG(in.good(), "cannot read trainer state '", path.string(), "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json(ss.str(), path.string());
}

std::string TrainerControl::state_json() const {
  json j = {{"args",
             {{"should_training_stop", should_training_stop},
              {"should_epoch_stop", should_epoch_stop},
              {"should_save", should_save},
              {"should_evaluate", should_evaluate},
              {"should_log", should_log}}},
            {"attributes", json::object()}};
  return j.dump();
}

}  // namespace accel
