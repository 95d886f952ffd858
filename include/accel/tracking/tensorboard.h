#pragma once
// TensorBoardTracker: event files that TensorBoard reads, written by accel
// itself (no TensorFlow, no protobuf library), as Accelerate's
// TensorBoardTracker writes them through torch's SummaryWriter:
//   <logging_dir>/<run_name>/events.out.tfevents.<time>.<host>.<pid>.<n>
// log() maps each value as Accelerate does: a number to a scalar, a string
// to text ("<key>/text_summary"), a map of numbers to one scalar chart with
// a folder per entry ("<run>/<key>_<entry>", as add_scalars), and beyond
// Accelerate a tensor to a histogram. store_init_configuration writes the
// configuration as hparams in the run's own file, so TensorBoard's HPARAMS
// tab lists the run itself (torch's add_hparams makes a second run).
//
// Writes happen on a thread of the tracker's own: log() encodes and queues.
//
//   tensorboard --logdir <logging_dir>
#include <filesystem>
#include <memory>
#include <string>

#include "accel/tracking/tracker.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API TensorBoardTracker : public GeneralTracker {
 public:
  TensorBoardTracker(std::string run_name, std::filesystem::path logging_dir);
  ~TensorBoardTracker() override;

  std::string name() const override { return "tensorboard"; }
  /// Creates the run's folder and its event file; throws naming the folder
  /// when it cannot.
  void start() override;
  void store_init_configuration(const TrackerConfig& config) override;
  /// `step` unset: the number of log() calls before this one.
  void log(const LogValues& values, std::optional<int64_t> step) override;
  /// Writes what is queued and closes the files.
  void finish() override;
  /// Returns when everything logged so far is in the files.
  void flush();

  /// <logging_dir>/<run_name>: what `tensorboard --logdir` takes.
  const std::filesystem::path& run_dir() const { return run_dir_; }

 private:
  struct Files;  // the event files, one per folder (record_writer.h)
  std::filesystem::path run_dir_;
  std::unique_ptr<Files> files_;
  int64_t calls_ = 0;
};

}  // namespace accel
