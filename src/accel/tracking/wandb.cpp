#include "accel/tracking/wandb.h"

#include <unistd.h>

#include <cmath>
#include <ctime>
#include <random>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "accel/tracking/leveldb_log.h"
#include "accel/tracking/protobuf_writer.h"
#include "accel/tracking/record_writer.h"
#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {
namespace {

using Clock = std::chrono::system_clock;

// Field numbers of wandb_internal.proto (wandb 0.31).
constexpr int kRecordNum = 1, kRecordHistory = 2, kRecordSummary = 3, kRecordConfig = 5, kRecordRun = 17,
              kRecordExit = 18, kRecordHeader = 21, kRecordInfo = 200;
constexpr int kInfoStreamId = 1;
constexpr int kRunId = 1, kRunProject = 3, kRunHost = 13, kRunStartTime = 17;
constexpr int kHistoryItem = 1, kHistoryStep = 2, kStepNum = 1;
constexpr int kItemKey = 1, kItemNestedKey = 2, kItemValueJson = 16;  // History-, Summary-, ConfigItem
constexpr int kUpdate = 1;                                            // SummaryRecord.update, ConfigRecord.update
constexpr int kExitCode = 1, kExitRuntime = 2;
constexpr int kHeaderVersionInfo = 1, kVersionProducer = 1, kVersionMinConsumer = 2;
constexpr int kTimestampSeconds = 1, kTimestampNanos = 2;
// What wandb 0.31 writes as the oldest reader of its files.
constexpr const char* kMinConsumer = "0.70.0";
constexpr int kHistogramBins = 64;  // wandb.Histogram's default

// Python's json.dumps of a float, which is what W&B's value_json holds.
std::string number_json(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  return nlohmann::json(x).dump();
}

// wandb.Histogram(values): counts over kHistogramBins equal bins between
// the smallest and largest value (numpy's range when they are equal).
std::string histogram_json(const at::Tensor& tensor) {
  auto values = tensor.detach().to(at::kCPU, at::kDouble).flatten();
  values = at::masked_select(values, at::isfinite(values));
  double lo = values.numel() ? values.min().item<double>() : 0, hi = values.numel() ? values.max().item<double>() : 1;
  if (lo == hi) lo -= 0.5, hi += 0.5;
  const auto counts = at::histc(values, kHistogramBins, lo, hi);
  std::string out = "{\"_type\": \"histogram\", \"values\": [";
  for (int i = 0; i < kHistogramBins; ++i) out += str(i ? ", " : "", static_cast<int64_t>(counts[i].item<double>()));
  out += "], \"bins\": [";
  for (int i = 0; i <= kHistogramBins; ++i) out += (i ? ", " : "") + number_json(lo + (hi - lo) * i / kHistogramBins);
  return out + "]}";
}

std::string value_json(const LogValue& value) {
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return number_json(*d);
  if (const auto* s = std::get_if<std::string>(&value)) return nlohmann::json(*s).dump();
  return histogram_json(std::get<at::Tensor>(value));
}

std::string config_json(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, double>)
          return number_json(v);
        else
          return nlohmann::json(v).dump();
      },
      value);
}

// A value's key: one name, or for an entry of a map of numbers the map's
// name and the entry's (wandb's nested_key, as it stores a logged dict).
using ItemKey = std::vector<std::string>;

ProtobufWriter item(const ItemKey& key, const std::string& json) {
  ProtobufWriter out;
  if (key.size() == 1)
    out.string(kItemKey, key[0]);
  else
    for (const auto& part : key) out.string(kItemNestedKey, part);
  out.string(kItemValueJson, json);
  return out;
}

ProtobufWriter timestamp(Clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  ProtobufWriter out;
  out.int64(kTimestampSeconds, ns / 1'000'000'000);
  out.int64(kTimestampNanos, ns % 1'000'000'000);
  return out;
}

std::string new_run_id() {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device device;
  std::mt19937_64 generator(device());
  std::uniform_int_distribution<int> pick(0, 35);
  std::string id;
  for (int i = 0; i < 8; ++i) id += alphabet[pick(generator)];
  return id;
}

std::string host_name() {
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  return host;
}

}  // namespace

struct WandbTracker::File {
  explicit File(const std::filesystem::path& path) : writer(path) {}
  RecordWriter writer;
  LevelDbLog log;
};

WandbTracker::WandbTracker(std::string run_name, std::filesystem::path logging_dir)
    : project_(std::move(run_name)), logging_dir_(std::move(logging_dir)), run_id_(new_run_id()) {}

WandbTracker::~WandbTracker() = default;

void WandbTracker::append(int field, const ProtobufWriter& message) {
  std::lock_guard lock(mutex_);
  ACCEL_CHECK(file_, "wandb tracker: a record before start() or after finish()");
  ProtobufWriter record;
  record.int64(kRecordNum, ++records_);
  record.message(field, message);
  ProtobufWriter info;
  info.string(kInfoStreamId, run_id_);
  record.message(kRecordInfo, info);
  file_->writer.write_framed(file_->log.frame(record.data()));
}

void WandbTracker::start() {
  started_ = Clock::now();
  const std::time_t now = Clock::to_time_t(started_);
  std::tm local{};
  ::localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &local);
  run_dir_ = logging_dir_ / "wandb" / str("offline-run-", stamp, "-", run_id_);
  std::error_code error;
  std::filesystem::create_directories(run_dir_, error);
  ACCEL_CHECK(!error, "wandb tracker: cannot create the run folder ", run_dir_.string(), ": ", error.message());
  {
    std::lock_guard lock(mutex_);
    file_ = std::make_unique<File>(run_dir_ / str("run-", run_id_, ".wandb"));
    file_->writer.write_framed(file_->log.file_header());
  }
  ProtobufWriter version;
  version.string(kVersionProducer, "accel");
  version.string(kVersionMinConsumer, kMinConsumer);
  ProtobufWriter header;
  header.message(kHeaderVersionInfo, version);
  append(kRecordHeader, header);

  ProtobufWriter run;
  run.string(kRunId, run_id_);
  run.string(kRunProject, project_);
  run.string(kRunHost, host_name());
  run.message(kRunStartTime, timestamp(started_));
  append(kRecordRun, run);
}

void WandbTracker::store_init_configuration(const TrackerConfig& config) {
  ProtobufWriter update;
  for (const auto& [key, value] : config) update.message(kUpdate, item(ItemKey{key}, config_json(value)));
  append(kRecordConfig, update);
}

void WandbTracker::log(const LogValues& values, std::optional<int64_t> step) {
  const int64_t at = step.value_or(next_step_);
  next_step_ = at + 1;
  const auto now = Clock::now();
  std::vector<std::pair<ItemKey, std::string>> items;
  for (const auto& [key, value] : values) {
    if (const auto* m = std::get_if<std::map<std::string, double>>(&value))
      for (const auto& [entry, x] : *m) items.emplace_back(ItemKey{key, entry}, number_json(x));
    else
      items.emplace_back(ItemKey{key}, value_json(value));
  }
  items.emplace_back(ItemKey{"_step"}, std::to_string(at));
  items.emplace_back(ItemKey{"_runtime"}, number_json(std::chrono::duration<double>(now - started_).count()));
  items.emplace_back(ItemKey{"_timestamp"}, number_json(std::chrono::duration<double>(now.time_since_epoch()).count()));

  ProtobufWriter history, summary;
  for (const auto& [key, json] : items) {
    history.message(kHistoryItem, item(key, json));
    summary.message(kUpdate, item(key, json));
  }
  ProtobufWriter step_message;
  step_message.int64(kStepNum, at);
  history.message(kHistoryStep, step_message);
  // The summary (a run's latest values) first, as wandb writes it.
  append(kRecordSummary, summary);
  append(kRecordHistory, history);
}

void WandbTracker::finish() {
  if (!file_) return;
  ProtobufWriter exit;
  // proto3 leaves a zero exit code unwritten.
  exit.int64(kExitRuntime, static_cast<int64_t>(std::chrono::duration<double>(Clock::now() - started_).count()));
  append(kRecordExit, exit);
  std::lock_guard lock(mutex_);
  file_->writer.flush();
  file_.reset();
}

void WandbTracker::flush() {
  std::lock_guard lock(mutex_);
  if (file_) file_->writer.flush();
}

}  // namespace accel
