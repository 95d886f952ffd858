#include "accel/tracking/mlflow.h"

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "accel/dist/logging.h"
#include "accel/launch/value.h"
#include "accel/tracking/http_client.h"
#include "accel/tracking/mlflow_requests.h"
#include "accel/util/check.h"

namespace accel {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// After the server could not be reached, values are dropped rather than
// sent for this long, so that a server that is gone costs one wait per
// pause, not one per step.
constexpr std::chrono::seconds kUnreachablePause{10};
// Calls waiting beyond this many mean the server cannot keep up: later
// values are dropped rather than held in memory without bound.
constexpr size_t kMaxQueuedJobs = 100000;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Python's str() of a JSON value (MLFLOW_TAGS' values become tags so).
std::string tag_text(const std::string& name, const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "True" : "False";
  if (value.is_number_integer()) return value.dump();
  if (value.is_number_float()) return launch::python_float(value.get<double>());
  if (value.is_null()) return "None";
  fail<std::invalid_argument>("MLFLOW_TAGS: the tag \"", name, "\" is ", value.dump(),
                              "; expected a string, a number or a boolean");
}

std::string user_name() {
  if (const char* user = std::getenv("USER"); user && *user) return user;
  if (const passwd* entry = ::getpwuid(::getuid())) return entry->pw_name;
  return "unknown";
}

}  // namespace

// One call the sender makes: values to log, or the run's end.
struct MLflowJob {
  std::vector<mlflow::Metric> metrics;
  std::vector<mlflow::KeyValue> params;
  std::optional<std::string> end_status;  // FINISHED or FAILED: ends the run
  int64_t end_time_ms = 0;
};

MLflowJob end_job(const char* status) {
  MLflowJob job;
  job.end_status = status;
  job.end_time_ms = now_ms();
  return job;
}

struct MLflowTracker::Sender {
  // Set before the thread starts, read only after.
  HttpAddress address;
  HttpHeaders headers;
  std::chrono::milliseconds timeout{120000};
  std::string experiment_name;
  std::optional<std::string> resume_run_id;
  std::optional<std::string> run_name;
  std::vector<mlflow::KeyValue> user_tags;  // also the experiment's, when it is created
  std::vector<mlflow::KeyValue> run_tags;   // user_tags and mlflow.* tags of a new run
  int64_t start_time_ms = now_ms();

  std::mutex mutex;
  std::condition_variable wake;  // the thread: jobs queued, or stop
  std::condition_variable idle;  // flush(): the queue drained
  std::deque<MLflowJob> queue;
  bool busy = false;
  bool stop = false;
  std::string error;   // the first failure not yet thrown to the caller
  std::string run_id;  // once created
  Clock::time_point paused_until{};
  std::thread thread;

  void begin() {
    thread = std::thread([this] { loop(); });
  }

  ~Sender() {
    {
      std::lock_guard lock(mutex);
      stop = true;
    }
    wake.notify_one();
    if (thread.joinable()) thread.join();
  }

  void push(MLflowJob job) {
    {
      std::lock_guard lock(mutex);
      if (queue.size() >= kMaxQueuedJobs) {
        if (error.empty())
          error = str("MLflow at ", address.uri, " is ", queue.size(), " calls behind; later values are dropped");
        return;
      }
      queue.push_back(std::move(job));
    }
    wake.notify_one();
  }

  // With the lock held: the failure to throw, now cleared.
  std::string take_error() { return std::exchange(error, std::string()); }

  void wait_idle() {
    std::unique_lock lock(mutex);
    idle.wait(lock, [&] { return queue.empty() && !busy; });
  }

  void loop() {
    std::unique_lock lock(mutex);
    while (true) {
      wake.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty() && stop) return;
      std::deque<MLflowJob> jobs = std::move(queue);
      queue.clear();
      busy = true;
      lock.unlock();
      std::string failure = send(jobs);
      lock.lock();
      busy = false;
      if (!failure.empty() && error.empty()) error = std::move(failure);
      idle.notify_all();
    }
  }

  // Sends `jobs` in order, consecutive values merged into as few calls as
  // the batch limits allow; returns the first failure, or "".
  std::string send(std::deque<MLflowJob>& jobs) {
    std::string failure;
    attempt(failure, false, [](const std::string&) {});  // the run first, even with nothing to log yet
    MLflowJob values;
    auto flush_values = [&] {
      if (values.metrics.empty() && values.params.empty()) return;
      attempt(failure, false, [&](const std::string& id) {
        for (const auto& body : mlflow::log_batch_bodies(id, values.metrics, values.params, {}))
          call("POST", "runs/log-batch", body);
      });
      values = {};
    };
    for (auto& job : jobs) {
      values.metrics.insert(values.metrics.end(), job.metrics.begin(), job.metrics.end());
      values.params.insert(values.params.end(), job.params.begin(), job.params.end());
      if (!job.end_status) continue;
      flush_values();
      // The end is tried even during a pause: the run's status matters most.
      attempt(failure, true, [&](const std::string& id) {
        call("POST", "runs/update", {{"run_id", id}, {"status", *job.end_status}, {"end_time", job.end_time_ms}});
      });
    }
    flush_values();
    return failure;
  }

  template <typename F>
  void attempt(std::string& failure, bool even_when_paused, F&& with_run) {
    if (!even_when_paused && Clock::now() < paused_until) return;  // dropped: the failure is already known
    try {
      with_run(ensure_run());
    } catch (const HttpUnreachable& e) {
      paused_until = Clock::now() + kUnreachablePause;
      if (failure.empty()) failure = e.what();
    } catch (const std::exception& e) {
      if (failure.empty()) failure = e.what();
    }
  }

  json call(const std::string& method, const std::string& endpoint, const json& body, const std::string& query = "") {
    const std::string path = "/api/2.0/mlflow/" + endpoint + (query.empty() ? "" : "?" + query);
    HttpHeaders all = headers;
    if (method == "POST") all.emplace_back("Content-Type", "application/json");
    const HttpResponse response =
        http_request(address, method, path, method == "POST" ? body.dump() : std::string(), all, timeout);
    if (response.status != 200)
      throw std::runtime_error(str("MLflow at ", address.uri, " answered ", response.status, " to ", endpoint, ": ",
                                   mlflow::error_text(response.body)));
    const json answer = json::parse(response.body, nullptr, false);
    ACCEL_CHECK(!answer.is_discarded(), "MLflow at ", address.uri, " answered ", endpoint,
                " with something that is not JSON: ", response.body.substr(0, 200));
    return answer;
  }

  // The experiment's id: found by name, else created (found again if
  // another process created it meanwhile).
  std::string experiment_id() {
    const std::string query = "experiment_name=" + url_encode(experiment_name);
    for (int tries = 0;; ++tries) {
      try {
        const json found = call("GET", "experiments/get-by-name", json(), query);
        const json& experiment = found.at("experiment");
        ACCEL_CHECK(experiment.value("lifecycle_stage", "active") == "active", "the MLflow experiment \"",
                    experiment_name, "\" at ", address.uri,
                    " is deleted; restore it (mlflow experiments restore) or choose another name");
        return experiment.at("experiment_id").get<std::string>();
      } catch (const HttpUnreachable&) {
        throw;
      } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find("RESOURCE_DOES_NOT_EXIST") == std::string::npos || tries > 0) throw;
      }
      json tags = json::array();
      for (const auto& [key, value] : user_tags) tags.push_back({{"key", key}, {"value", value}});
      try {
        return call("POST", "experiments/create", {{"name", experiment_name}, {"tags", tags}})
            .at("experiment_id")
            .get<std::string>();
      } catch (const HttpUnreachable&) {
        throw;
      } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find("RESOURCE_ALREADY_EXISTS") == std::string::npos) throw;
      }
    }
  }

  std::string ensure_run() {
    {
      std::lock_guard lock(mutex);
      if (!run_id.empty()) return run_id;
    }
    std::string id;
    if (resume_run_id) {
      // As mlflow.start_run(run_id=...): the run must exist and not be
      // deleted; it is RUNNING again and gets the tags.
      const json found = call("GET", "runs/get", json(), "run_id=" + url_encode(*resume_run_id));
      const json& info = found.at("run").at("info");
      ACCEL_CHECK(info.value("lifecycle_stage", "active") != "deleted", "the MLflow run ", *resume_run_id,
                  " (MLFLOW_RUN_ID) at ", address.uri, " is deleted");
      json update = {{"run_id", *resume_run_id}, {"status", "RUNNING"}};
      if (run_name) update["run_name"] = *run_name;
      call("POST", "runs/update", update);
      std::vector<mlflow::KeyValue> tags = user_tags;
      for (const auto& [key, value] : run_tags)
        if (key == "mlflow.note.content") tags.emplace_back(key, value);
      for (const auto& body : mlflow::log_batch_bodies(*resume_run_id, {}, {}, tags))
        call("POST", "runs/log-batch", body);
      id = *resume_run_id;
    } else {
      json tags = json::array();
      for (const auto& [key, value] : run_tags) tags.push_back({{"key", key}, {"value", value}});
      json create = {{"experiment_id", experiment_id()}, {"start_time", start_time_ms}, {"tags", tags}};
      if (run_name) create["run_name"] = *run_name;
      id = call("POST", "runs/create", create).at("run").at("info").at("run_id").get<std::string>();
    }
    std::lock_guard lock(mutex);
    run_id = id;
    return id;
  }
};

MLflowTracker::MLflowTracker(std::string project_name, MLflowOptions options)
    : project_name_(std::move(project_name)), options_(std::move(options)) {}

MLflowTracker::~MLflowTracker() {
  if (!sender_) return;
  // Never finished: the program ends the run by leaving, or by an exception.
  sender_->push(end_job(std::uncaught_exceptions() > 0 ? "FAILED" : "FINISHED"));
  sender_.reset();  // sends what is queued
}

void MLflowTracker::start() {
  const EnvLookup& env = options_.env();
  const auto uri = options_.tracking_uri() ? options_.tracking_uri() : env_string(env, "MLFLOW_TRACKING_URI");
  ACCEL_CHECK_ARG(uri,
                  "the MLflow tracker needs a tracking server: set MLFLOW_TRACKING_URI (or "
                  "MLflowOptions::tracking_uri) to the http://host:port of an `mlflow server`");
  auto sender = std::make_unique<Sender>();
  sender->address = parse_http_uri(*uri, "MLflow tracking URI (MLFLOW_TRACKING_URI)");
  tracking_uri_ = *uri;

  if (const auto token = env_string(env, "MLFLOW_TRACKING_TOKEN")) {
    sender->headers.emplace_back("Authorization", "Bearer " + *token);
  } else if (const auto user = env_string(env, "MLFLOW_TRACKING_USERNAME")) {
    const auto password = env_string(env, "MLFLOW_TRACKING_PASSWORD").value_or("");
    const std::string plain = *user + ":" + password;
    static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string encoded;
    for (size_t i = 0; i < plain.size(); i += 3) {
      uint32_t n = static_cast<unsigned char>(plain[i]) << 16;
      if (i + 1 < plain.size()) n |= static_cast<unsigned char>(plain[i + 1]) << 8;
      if (i + 2 < plain.size()) n |= static_cast<unsigned char>(plain[i + 2]);
      encoded += alphabet[(n >> 18) & 63];
      encoded += alphabet[(n >> 12) & 63];
      encoded += i + 1 < plain.size() ? alphabet[(n >> 6) & 63] : '=';
      encoded += i + 2 < plain.size() ? alphabet[n & 63] : '=';
    }
    sender->headers.emplace_back("Authorization", "Basic " + encoded);
  }
  if (const auto seconds = env_string(env, "MLFLOW_HTTP_REQUEST_TIMEOUT")) {
    const long s = parse_int(*seconds, "MLFLOW_HTTP_REQUEST_TIMEOUT");
    ACCEL_CHECK_ARG(s > 0, "MLFLOW_HTTP_REQUEST_TIMEOUT: expected a number of seconds above 0, got ", *seconds);
    sender->timeout = std::chrono::seconds(s);
  }

  experiment_name_ =
      env_string(env, "MLFLOW_EXPERIMENT_NAME").value_or(options_.experiment_name().value_or(project_name_));
  ACCEL_CHECK_ARG(!experiment_name_.empty(), "the MLflow experiment name is empty; expected a name");
  sender->experiment_name = experiment_name_;
  sender->resume_run_id = env_string(env, "MLFLOW_RUN_ID");
  if (!sender->resume_run_id) sender->resume_run_id = options_.run_id();
  sender->run_name = options_.run_name();

  std::map<std::string, std::string> tags = options_.tags();
  if (const auto text = env_string(env, "MLFLOW_TAGS")) {
    const json parsed = json::parse(*text, nullptr, false);
    ACCEL_CHECK_ARG(parsed.is_object(), "MLFLOW_TAGS: expected a JSON object of tags ({\"team\": \"nlp\"}), got ",
                    *text);
    tags.clear();
    for (const auto& [key, value] : parsed.items()) tags[key] = tag_text(key, value);
  }
  for (const auto& [key, value] : tags) {
    const auto why = mlflow::invalid_name(key);
    ACCEL_CHECK_ARG(!why, "MLflow tag \"", key, "\": ", why.value_or(""));
    ACCEL_CHECK_ARG(value.size() <= mlflow::kMaxTagValueLength, "MLflow tag \"", key, "\": its value is ", value.size(),
                    " characters long; MLflow allows ", mlflow::kMaxTagValueLength);
    sender->user_tags.emplace_back(key, value);
  }
  // The tags mlflow's Python client adds to a new run (its context).
  sender->run_tags = sender->user_tags;
  if (options_.description()) sender->run_tags.emplace_back("mlflow.note.content", *options_.description());
  if (sender->run_name) sender->run_tags.emplace_back("mlflow.runName", *sender->run_name);
  sender->run_tags.emplace_back("mlflow.user", user_name());
  sender->run_tags.emplace_back("mlflow.source.name", program_invocation_name);
  sender->run_tags.emplace_back("mlflow.source.type", "LOCAL");

  sender->begin();
  sender_ = std::move(sender);
  sender_->push({});  // creates the run now, not with the first values
}

void MLflowTracker::store_init_configuration(const TrackerConfig& config) {
  ACCEL_CHECK_STATE(sender_, "MLflowTracker: store_init_configuration before start()");
  MLflowJob job;
  for (const auto& [key, value] : config) {
    const auto why = mlflow::invalid_name(key);
    ACCEL_CHECK_ARG(!why, "MLflow param \"", key, "\": ", why.value_or(""));
    std::string text = mlflow::param_text(value);
    if (text.size() > mlflow::kMaxParamValueLength) {
      get_logger("accel.tracking")
          .warning(str("MLflow: the param \"", key, "\" is left out: its value is ", text.size(),
                       " characters long and MLflow takes at most ", mlflow::kMaxParamValueLength));
      continue;
    }
    job.params.emplace_back(key, std::move(text));
  }
  sender_->push(std::move(job));
}

void MLflowTracker::log(const LogValues& values, std::optional<int64_t> step) {
  ACCEL_CHECK_STATE(sender_, "MLflowTracker: log before start()");
  const int64_t at = step.value_or(calls_);
  ++calls_;
  const int64_t time = now_ms();
  MLflowJob job;
  std::string refused;
  for (const auto& [key, value] : values) {
    std::optional<double> number;
    if (const auto* d = std::get_if<double>(&value)) number = *d;
    if (const auto* i = std::get_if<int64_t>(&value)) number = static_cast<double>(*i);
    if (!number) {
      if (!warned_dropped_)
        get_logger("accel.tracking")
            .warning(str("MLflow: \"", key,
                         "\" is not a number and is left out (MLflow's metrics are numbers; "
                         "later such values are left out without a word)"));
      warned_dropped_ = true;
      continue;
    }
    if (const auto why = mlflow::invalid_name(key)) {
      if (refused.empty()) refused = str("MLflow metric \"", key, "\" is left out: ", *why);
      continue;
    }
    job.metrics.push_back({key, *number, time, at});
  }
  if (!job.metrics.empty()) sender_->push(std::move(job));
  std::string error;
  {
    std::lock_guard lock(sender_->mutex);
    error = sender_->take_error();
  }
  ACCEL_CHECK(error.empty(), error);
  ACCEL_CHECK_ARG(refused.empty(), refused);
}

void MLflowTracker::flush() {
  if (!sender_) return;
  sender_->wait_idle();
  std::lock_guard lock(sender_->mutex);
  const std::string error = sender_->take_error();
  ACCEL_CHECK(error.empty(), error);
}

void MLflowTracker::finish() {
  if (!sender_) return;
  sender_->push(end_job("FINISHED"));
  const auto sender = std::move(sender_);
  sender->wait_idle();
  std::lock_guard lock(sender->mutex);
  finished_run_id_ = sender->run_id;
  const std::string error = sender->take_error();
  ACCEL_CHECK(error.empty(), error);
}

std::string MLflowTracker::run_id() const {
  if (!sender_) return finished_run_id_;
  std::lock_guard lock(sender_->mutex);
  return sender_->run_id;
}

}  // namespace accel
