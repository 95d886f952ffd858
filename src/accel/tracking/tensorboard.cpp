#include "accel/tracking/tensorboard.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include <ATen/ops/_to_copy.h>
#include <c10/core/ScalarType.h>

#include "accel/tracking/record_writer.h"
#include "accel/tracking/tensorboard_events.h"
#include "accel/util/check.h"

namespace accel {
namespace {

double now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// torch's name: events.out.tfevents.<seconds, 10 digits>.<host>.<pid>.<n>,
// n counting the files this process made.
std::string event_file_name() {
  static std::atomic<int> counter = 0;  // trackers may start on several threads
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%010lld", static_cast<long long>(now()));
  return str("events.out.tfevents.", seconds, ".", host, ".", ::getpid(), ".", counter++);
}

std::vector<double> values_of(const at::Tensor& tensor) {
  const at::Tensor flat = tensor.detach().to(at::kCPU, at::kDouble).contiguous().reshape({-1});
  const double* data = flat.data_ptr<double>();
  return std::vector<double>(data, data + flat.numel());
}

}  // namespace

struct TensorBoardTracker::Files {
  // Folder -> its event file: the run's own, and one per add_scalars entry.
  std::map<std::filesystem::path, std::unique_ptr<RecordWriter>> writers;

  RecordWriter& in(const std::filesystem::path& dir) {
    auto& writer = writers[dir];
    if (!writer) {
      std::error_code error;
      std::filesystem::create_directories(dir, error);
      ACCEL_CHECK(!error, "TensorBoard cannot create the folder ", dir.string(), ": ", error.message());
      writer = std::make_unique<RecordWriter>(dir / event_file_name());
      writer->write(tensorboard::file_version_event(now()));
    }
    return *writer;
  }
};

TensorBoardTracker::TensorBoardTracker(std::string run_name, std::filesystem::path logging_dir)
    : run_dir_(std::move(logging_dir) / std::move(run_name)) {}

TensorBoardTracker::~TensorBoardTracker() = default;

void TensorBoardTracker::start() {
  files_ = std::make_unique<Files>();
  files_->in(run_dir_);
}

void TensorBoardTracker::store_init_configuration(const TrackerConfig& config) {
  ACCEL_CHECK_STATE(files_, "TensorBoardTracker: store_init_configuration before start()");
  for (auto& event : tensorboard::hparams_events(config, now())) files_->in(run_dir_).write(std::move(event));
}

void TensorBoardTracker::log(const LogValues& values, std::optional<int64_t> step) {
  ACCEL_CHECK_STATE(files_, "TensorBoardTracker: log before start()");
  const int64_t at = step.value_or(calls_);
  ++calls_;
  const double wall_time = now();
  RecordWriter& run = files_->in(run_dir_);
  for (const auto& [key, value] : values) {
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
            run.write(tensorboard::scalar_event(key, static_cast<double>(v), at, wall_time));
          } else if constexpr (std::is_same_v<T, std::string>) {
            run.write(tensorboard::text_event(key, v, at, wall_time));
          } else if constexpr (std::is_same_v<T, std::map<std::string, double>>) {
            // add_scalars: each entry in a folder of its own, under the key's tag.
            std::string folder = key;
            for (char& c : folder)
              if (c == '/') c = '_';
            for (const auto& [entry, x] : v)
              files_->in(run_dir_ / (folder + "_" + entry)).write(tensorboard::scalar_event(key, x, at, wall_time));
          } else {
            const auto histogram = tensorboard::make_histogram(key, values_of(v));
            run.write(tensorboard::histogram_event(key, histogram, at, wall_time));
          }
        },
        value);
  }
}

void TensorBoardTracker::flush() {
  if (!files_) return;
  for (auto& [dir, writer] : files_->writers) writer->flush();
}

void TensorBoardTracker::finish() {
  // The files close even when a write failed (the error still reaches the caller).
  const auto files = std::move(files_);
  if (files)
    for (auto& [dir, writer] : files->writers) writer->flush();
}

}  // namespace accel
