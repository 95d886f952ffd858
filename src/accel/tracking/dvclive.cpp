#include "accel/tracking/dvclive.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <system_error>
#include <utility>
#include <variant>

#include "accel/dist/logging.h"
#include "accel/tracking/dvclive_files.h"
#include "accel/tracking/task_thread.h"
#include "accel/util/check.h"

namespace accel {
namespace {

namespace fs = std::filesystem;

void write_file(const fs::path& path, const std::string& text, std::ios::openmode mode = std::ios::trunc) {
  std::ofstream out(path, std::ios::binary | std::ios::out | mode);
  out << text;
  out.flush();
  ACCEL_CHECK(out.good(), "DVCLive cannot write ", path.string());
}

// Python's os.path.relpath(abspath(path), abspath(start)), with '/'.
std::string relative_to(const fs::path& path, const fs::path& start) {
  return fs::absolute(path)
      .lexically_normal()
      .lexically_relative(fs::absolute(start).lexically_normal())
      .generic_string();
}

// Whether every entry of the dvc.yaml at `path` is one of DVCLive's for the
// folder `prefix` ("dvclive/"): a file it may overwrite. A user's stages or
// other entries are not touched.
bool only_dvclive_entries(const fs::path& path, const std::string& prefix) {
  try {
    const YAML::Node root = YAML::LoadFile(path.string());
    if (root.IsNull()) return true;
    if (!root.IsMap()) return false;
    for (const auto& section : root) {
      const std::string key = section.first.as<std::string>();
      if (key != "params" && key != "metrics" && key != "plots") return false;
      if (!section.second.IsSequence()) return false;
      for (const auto& entry : section.second) {
        std::string name;
        if (entry.IsScalar())
          name = entry.as<std::string>();
        else if (entry.IsMap() && entry.size() == 1)
          name = entry.begin()->first.as<std::string>();
        if (name.rfind(prefix, 0) != 0) return false;
      }
    }
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

}  // namespace

struct DVCLiveTracker::Files {
  fs::path dir;
  std::optional<fs::path> dvcyaml;
  TrackerConfig params;
  nlohmann::ordered_json summary = nlohmann::ordered_json::object();
  bool metrics_logged = false;
  // Declared last: it goes first, running what is queued while the rest is here.
  TaskThread thread;

  fs::path metrics_dir() const { return dir / "plots" / "metrics"; }

  void write_params() {
    std::string text;
    for (const auto& [key, value] : params)
      text += dvclive::yaml_scalar(key) + ": " + dvclive::yaml_scalar(value) + "\n";
    write_file(dir / "params.yaml", text);
  }

  void log_metric(const std::string& name, const dvclive::Value& value, int64_t step) {
    const fs::path file = metrics_dir() / (name + ".tsv");
    std::error_code error;
    fs::create_directories(file.parent_path(), error);
    ACCEL_CHECK(!error, "DVCLive cannot create the folder ", file.parent_path().string(), ": ", error.message());
    std::string rows;
    if (!fs::exists(file)) rows = "step\t" + dvclive::tsv_field(name.substr(name.rfind('/') + 1)) + "\n";
    rows += std::to_string(step) + "\t" + dvclive::tsv_field(value) + "\n";
    write_file(file, rows, std::ios::app);
    metrics_logged = true;
    // The summary: nested by the name's parts, a part logged before keeps its place.
    nlohmann::ordered_json* at = &summary;
    size_t begin = 0;
    for (size_t slash; (slash = name.find('/', begin)) != std::string::npos; begin = slash + 1) {
      nlohmann::ordered_json& part = (*at)[name.substr(begin, slash - begin)];
      if (!part.is_object()) part = nlohmann::ordered_json::object();
      at = &part;
    }
    std::visit([&](const auto& v) { (*at)[name.substr(begin)] = v; }, value);
  }

  // Live.sync(): the summary with its step (none before the first), and dvc.yaml.
  void sync(std::optional<int64_t> step) {
    if (step) summary["step"] = *step;
    write_file(dir / "metrics.json", dvclive::python_json(summary) + "\n");
    if (!dvcyaml) return;
    const fs::path base = dvcyaml->parent_path().empty() ? fs::path(".") : dvcyaml->parent_path();
    std::string text;
    if (!params.empty()) text += "params:\n- " + dvclive::yaml_scalar(relative_to(dir / "params.yaml", base)) + "\n";
    if (metrics_logged || !summary.empty())
      text += "metrics:\n- " + dvclive::yaml_scalar(relative_to(dir / "metrics.json", base)) + "\n";
    if (fs::exists(metrics_dir()))
      text += "plots:\n- " + dvclive::yaml_scalar(relative_to(metrics_dir(), base)) + ":\n    x: step\n";
    write_file(*dvcyaml, text.empty() ? "{}\n" : text);
  }
};

DVCLiveTracker::DVCLiveTracker(DVCLiveOptions options) : options_(std::move(options)) {}

DVCLiveTracker::~DVCLiveTracker() = default;  // the thread writes what is queued

void DVCLiveTracker::start() {
  const auto resume = env_bool(options_.env(), "DVCLIVE_RESUME");
  ACCEL_CHECK_ARG(!resume.value_or(false),
                  "DVCLIVE_RESUME is set: accel's DVCLive tracker does not resume a run (it starts one afresh, "
                  "as Live(resume=False)); unset it");
  if (options_.dvcyaml())
    ACCEL_CHECK_ARG(options_.dvcyaml()->filename() == "dvc.yaml", "DVCLive's dvcyaml \"", options_.dvcyaml()->string(),
                    "\" must be a file named dvc.yaml");
  auto files = std::make_shared<Files>();
  files->dir = options_.dir();
  files->dvcyaml = options_.dvcyaml();
  std::error_code error;
  fs::create_directories(files->dir, error);
  ACCEL_CHECK(!error, "DVCLive cannot create the folder ", files->dir.string(), ": ", error.message());
  // As Live(): an earlier run's files in the folder go.
  for (const char* plots : {"metrics", "images", "custom", "sklearn"})
    fs::remove_all(files->dir / "plots" / plots, error);
  for (const char* name : {"metrics.json", "params.yaml", "report.html", "report.md"})
    fs::remove(files->dir / name, error);
  for (const auto& entry : fs::directory_iterator(files->dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "dvc.yaml") == 0) fs::remove(entry.path(), error);
  }
  if (files->dvcyaml && fs::exists(*files->dvcyaml)) {
    const fs::path base = files->dvcyaml->parent_path().empty() ? fs::path(".") : files->dvcyaml->parent_path();
    if (!only_dvclive_entries(*files->dvcyaml, relative_to(files->dir, base) + "/")) {
      get_logger("accel.tracking")
          .warning(str("DVCLive: ", files->dvcyaml->string(),
                       " holds entries of its own; accel leaves it as it is (dvclive would merge its params, "
                       "metrics and plots entries into it: add them by hand)"));
      files->dvcyaml.reset();
    }
  }
  files_ = std::move(files);
  step_ = 0;
}

void DVCLiveTracker::store_init_configuration(const TrackerConfig& config) {
  ACCEL_CHECK_STATE(files_, "DVCLiveTracker: store_init_configuration before start()");
  files_->thread.push([files = files_.get(), config] {
    for (const auto& [key, value] : config) {
      auto same = [&](const auto& entry) { return entry.first == key; };
      if (auto it = std::find_if(files->params.begin(), files->params.end(), same); it != files->params.end())
        it->second = value;
      else
        files->params.emplace_back(key, value);
    }
    files->write_params();
  });
}

void DVCLiveTracker::log(const LogValues& values, std::optional<int64_t> step) {
  ACCEL_CHECK_STATE(files_, "DVCLiveTracker: log before start()");
  if (step) step_ = *step;
  std::vector<std::pair<std::string, dvclive::Value>> metrics;
  std::string refused;
  for (const auto& [key, value] : values) {
    if (std::holds_alternative<std::map<std::string, double>>(value) || std::holds_alternative<at::Tensor>(value)) {
      if (!warned_dropped_)
        get_logger("accel.tracking")
            .warning(str("DVCLive: \"", key,
                         "\" is neither a number nor text and is left out, as Accelerate does "
                         "(later such values are left out without a word)"));
      warned_dropped_ = true;
      continue;
    }
    if (const std::string why = dvclive::invalid_metric_name(key); !why.empty()) {
      if (refused.empty()) refused = str("DVCLive metric \"", key, "\" is left out: ", why);
      continue;
    }
    metrics.emplace_back(key, dvclive::metric_value(value));
  }
  files_->thread.push([files = files_.get(), metrics = std::move(metrics), at = step_] {
    for (const auto& [name, value] : metrics) files->log_metric(name, value, at);
    files->sync(at);
  });
  ++step_;
  const std::string error = files_->thread.take_error();
  ACCEL_CHECK(error.empty(), error);
  ACCEL_CHECK_ARG(refused.empty(), refused);
}

void DVCLiveTracker::flush() {
  if (!files_) return;
  files_->thread.wait_idle();
  const std::string error = files_->thread.take_error();
  ACCEL_CHECK(error.empty(), error);
}

void DVCLiveTracker::finish() {
  if (!files_) return;
  // Live.end(): the step of the summary (the last one logged), synced again.
  files_->thread.push([files = files_.get()] {
    const auto step = files->summary.find("step");
    files->sync(step != files->summary.end() ? std::optional<int64_t>(step->get<int64_t>()) : std::nullopt);
  });
  const auto files = std::move(files_);
  files->thread.wait_idle();
  const std::string error = files->thread.take_error();
  ACCEL_CHECK(error.empty(), error);
}

}  // namespace accel
