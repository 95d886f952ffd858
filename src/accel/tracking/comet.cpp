#include "accel/tracking/comet.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <random>
#include <system_error>
#include <utility>
#include <vector>

#include "accel/dist/logging.h"
#include "accel/tracking/comet_messages.h"
#include "accel/tracking/task_thread.h"
#include "accel/tracking/zip_writer.h"
#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {
namespace {

namespace fs = std::filesystem;

// comet_ml reads its booleans with everett's parse_bool.
const std::vector<std::string> kTrue = {"t", "true", "yes", "y", "1", "on"};
const std::vector<std::string> kFalse = {"f", "false", "no", "n", "0", "off"};
// comet_ml.start's modes (comet_start/start_modes.py).
const std::vector<std::string> kModes = {"get_or_create", "create", "get"};

bool one_of(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::mt19937_64& generator() {
  thread_local std::mt19937_64 g(std::random_device{}());
  return g;
}

// uuid.uuid4().hex, comet_ml's new experiment key.
std::string new_experiment_key() {
  std::uniform_int_distribution<int> nibble(0, 15);
  std::string key;
  for (int i = 0; i < 32; ++i) {
    int v = nibble(generator());
    if (i == 12) v = 4;            // the version
    if (i == 16) v = 8 | (v & 3);  // the RFC 4122 variant
    key += "0123456789abcdef"[v];
  }
  return key;
}

// comet_ml's random_ascii_string(): what keeps archives of one key apart.
std::string random_letters(int n) {
  static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::uniform_int_distribution<int> pick(0, 51);
  std::string out;
  for (int i = 0; i < n; ++i) out += letters[pick(generator())];
  return out;
}

// os.path.expanduser for "~" and "~/...".
fs::path expand_user(const std::string& path, const EnvLookup& env) {
  if (path == "~" || path.rfind("~/", 0) == 0)
    if (auto home = env_string(env, "HOME")) return fs::path(*home + path.substr(1));
  return path;
}

}  // namespace

struct CometTracker::Archive {
  Archive(const fs::path& temp, fs::path final_path) : zip(temp), destination(std::move(final_path)) {}
  ZipWriter zip;
  fs::path destination;
  comet::ExperimentFile file;  // filled by start(), the stop time by finish()
  bool failed = false;         // a write failed: the rest is not written, nor the archive renamed

  // Runs `write` unless an earlier one failed, so that a broken archive
  // stays under its temporary name instead of being completed.
  template <class Write>
  void guarded(Write&& write) {
    if (failed) return;
    try {
      write();
    } catch (...) {
      failed = true;
      throw;
    }
  }
  // Declared last: it goes first, running what is queued while the rest is here.
  TaskThread thread;
};

CometTracker::CometTracker(std::string run_name, std::filesystem::path logging_dir, EnvLookup env)
    : project_(std::move(run_name)), logging_dir_(std::move(logging_dir)), env_(std::move(env)) {}

// As comet_ml's exit hook: an experiment not finished is archived when the
// tracker goes, marked as having met an error when an exception is on its
// way out (comet_ml's exception hook does the same for Python's).
CometTracker::~CometTracker() {
  if (archive_file_ && std::uncaught_exceptions() > 0)
    archive_file_->file.customer_error_message = "Unexpected error detected in the user script: an exception ended it";
  try {
    finish();
  } catch (const std::exception& error) {
    get_logger("accel.tracking").warning(error.what());
  }
}

void CometTracker::start() {
  if (const auto online = env_string(env_, "COMET_START_ONLINE")) {
    const std::string value = lower(trim(*online));
    ACCEL_CHECK_ARG(one_of(kTrue, value) || one_of(kFalse, value), "COMET_START_ONLINE=\"", *online,
                    "\" is not a boolean comet_ml reads; expected one of ", join(kTrue, ", "), " or ",
                    join(kFalse, ", "));
    ACCEL_CHECK_ARG(one_of(kFalse, value), "COMET_START_ONLINE=\"", *online,
                    "\": accel's comet_ml tracker writes experiments offline only (send the archive with "
                    "`comet upload`); unset it or set it to false");
  }
  const std::string mode = trim(env_string(env_, "COMET_START_MODE").value_or("get_or_create"));
  ACCEL_CHECK_ARG(one_of(kModes, mode), "COMET_START_MODE=\"", mode, "\" is not a mode of comet_ml.start; expected ",
                  join(kModes, ", "));
  // comet_ml strips its string settings.
  std::optional<std::string> given_key = env_string(env_, "COMET_EXPERIMENT_KEY");
  if (given_key) given_key = trim(*given_key);
  if (given_key) {
    const bool alnum = std::all_of(given_key->begin(), given_key->end(),
                                   [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; });
    ACCEL_CHECK_ARG(alnum && given_key->size() >= 32 && given_key->size() <= 50, "COMET_EXPERIMENT_KEY=\"", *given_key,
                    "\" is not an experiment key comet_ml accepts: 32 to 50 letters and digits");
  }
  ACCEL_CHECK_ARG(mode != "get" || given_key,
                  "COMET_START_MODE=get adds to an existing experiment and needs its key in COMET_EXPERIMENT_KEY "
                  "(or use get_or_create or create)");

  const auto configured = env_string(env_, "COMET_OFFLINE_DIRECTORY");
  const fs::path directory = configured             ? expand_user(*configured, env_)
                             : logging_dir_.empty() ? fs::path(".")
                                                    : logging_dir_;
  std::error_code error;
  fs::create_directories(directory, error);
  ACCEL_CHECK(!error, "comet_ml tracker: cannot create the offline directory ", directory.string(), ": ",
              error.message());

  key_ = given_key.value_or(new_experiment_key());
  // As comet_ml: only mode create names the archive by the key alone.
  archive_ = directory / (mode == "create" ? key_ + ".zip" : key_ + "-" + random_letters(6) + ".zip");
  const fs::path temp = archive_.string() + ".tmp";
  try {
    archive_file_ = std::make_shared<Archive>(temp, archive_);
  } catch (const std::exception& e) {
    fail<std::runtime_error>("comet_ml tracker: cannot write in the offline directory ", directory.string(), ": ",
                             e.what());
  }
  archive_file_->zip.begin_entry("messages.json");
  comet::ExperimentFile& file = archive_file_->file;
  file.offline_id = key_;
  file.project_name = project_;
  file.workspace = env_string(env_, "COMET_WORKSPACE");
  file.start_time_ms = now_ms();
  file.resume_strategy = mode;
  file.user_provided_experiment_key = given_key.has_value();
  messages_ = 0;
  step_.reset();
  params_.clear();
  send(comet::log_other_line(next_id(), "offline_experiment", "true"));
}

void CometTracker::send(std::string line) {
  line += '\n';
  archive_file_->thread.push(
      [archive = archive_file_.get(), line = std::move(line)] { archive->guarded([&] { archive->zip.write(line); }); });
}

void CometTracker::store_init_configuration(const TrackerConfig& config) {
  ACCEL_CHECK_STATE(archive_file_, "CometTracker: store_init_configuration before start()");
  // log_parameters(dict): one value per key (the last given), sent in key order.
  std::map<std::string, ConfigValue> sorted;
  for (const auto& [key, value] : config) sorted.insert_or_assign(key, value);
  for (const auto& [key, value] : sorted) {
    const std::string value_json = comet::config_value_json(value);
    // A parameter sent before with the same value is not sent again, as comet_ml de-duplicates.
    if (auto it = params_.find(key); it != params_.end() && it->second == value_json) continue;
    params_[key] = value_json;
    send(comet::parameter_line({next_id(), now_ms()}, key, value_json, step_));
  }
}

void CometTracker::log(const LogValues& values, std::optional<int64_t> step) {
  ACCEL_CHECK_STATE(archive_file_, "CometTracker: log before start()");
  if (step) {
    // set_step: the step becomes current and is sent as the parameter curr_step when it changed.
    step_ = step;
    const std::string value_json = std::to_string(*step);
    if (auto it = params_.find("curr_step"); it == params_.end() || it->second != value_json) {
      params_["curr_step"] = value_json;
      send(comet::parameter_line({next_id(), now_ms()}, "curr_step", value_json, step_));
    }
  }
  for (const auto& [key, value] : values) {
    if (const auto* i = std::get_if<int64_t>(&value)) {
      send(comet::metric_line({next_id(), now_ms()}, key, *i, step_));
    } else if (const auto* d = std::get_if<double>(&value)) {
      send(comet::metric_line({next_id(), now_ms()}, key, *d, step_));
    } else if (const auto* s = std::get_if<std::string>(&value)) {
      send(comet::log_other_line(next_id(), key, comet::string_json(comet::truncate(*s, comet::kMaxValueLength))));
    } else if (const auto* m = std::get_if<std::map<std::string, double>>(&value)) {
      for (const auto& [entry, x] : *m) send(comet::metric_line({next_id(), now_ms()}, entry, x, step_));
    } else if (!warned_tensor_) {
      get_logger("accel.tracking")
          .warning(str("comet_ml: \"", key,
                       "\" is a tensor and is left out, as Accelerate's CometMLTracker leaves it out "
                       "(later ones are left out without a word)"));
      warned_tensor_ = true;
    }
  }
  const std::string error = archive_file_->thread.take_error();
  ACCEL_CHECK(error.empty(), "comet_ml tracker: writing ", archive_.string(), ".tmp failed: ", error,
              " (the archive stays incomplete there)");
}

void CometTracker::flush() {
  if (!archive_file_) return;
  archive_file_->thread.wait_idle();
  const std::string error = archive_file_->thread.take_error();
  ACCEL_CHECK(error.empty(), "comet_ml tracker: writing ", archive_.string(), ".tmp failed: ", error);
}

void CometTracker::finish() {
  if (!archive_file_) return;
  archive_file_->file.stop_time_ms = now_ms();
  archive_file_->thread.push([archive = archive_file_.get(), json = comet::experiment_json(archive_file_->file)] {
    archive->guarded([&] {
      archive->zip.end_entry();
      archive->zip.add("experiment.json", json);
      archive->zip.close();
      fs::rename(archive->zip.path(), archive->destination);
    });
  });
  archive_file_->thread.wait_idle();
  const std::string error = archive_file_->thread.take_error();
  const bool failed = archive_file_->failed;
  archive_file_.reset();
  ACCEL_CHECK(!failed, "comet_ml tracker: the archive ", archive_.string(),
              ".tmp is incomplete and was not renamed to ", archive_.filename().string(), ": ",
              error.empty() ? std::string("an earlier write failed") : error);
  get_logger("accel.tracking")
      .info(str("comet_ml: the offline experiment is in ", archive_.string(),
                "; to send it to Comet, run: comet upload ", archive_.string()));
}

}  // namespace accel
