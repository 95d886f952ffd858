#pragma once
// DVCLiveTracker: DVCLive's files, written by accel itself, as Accelerate's
// DVCLiveTracker writes them through dvclive's Live() (its defaults: the
// folder "dvclive" in the working folder, dvc.yaml beside it):
//   <dir>/params.yaml                 store_init_configuration's values
//   <dir>/metrics.json                each metric's latest value, nested by
//                                     the '/' parts of its name, and "step"
//   <dir>/plots/metrics/<name>.tsv    each metric's history: "step\t<last
//                                     part of the name>", a row per log()
//   dvc.yaml                          params, metrics and plots entries
//                                     pointing at those files
// log() maps each value as Accelerate does: numbers and strings are metrics
// (NaN and infinities written as "nan", "inf", "-inf", as dvclive does);
// maps and tensors are left out with a warning. Each log() is a step: the
// given step, else the one after the last. At start the files of an
// earlier run in <dir> are removed, as Live() does.
//
// Not done (dvclive does these through DVC and Git): saving a DVC
// experiment at the end (`dvc exp save` does it by hand), resuming
// (DVCLIVE_RESUME is refused by name), reports, images, Studio.
//
// Writes happen on a thread of the tracker's own: log() queues.
//
//   dvc metrics show; dvc plots show   (in a DVC repository)
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <torch/arg.h>

#include "accel/tracking/tracker.h"
#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API DVCLiveOptions {
  /// Live(dir=...): the folder of the files.
  TORCH_ARG(std::filesystem::path, dir) = "dvclive";
  /// Live(dvcyaml=...): where dvc.yaml goes (its name must be dvc.yaml);
  /// unset: none is written.
  TORCH_ARG(std::optional<std::filesystem::path>, dvcyaml) = std::filesystem::path("dvc.yaml");
  /// Where environment variables come from (tests pass a map).
  TORCH_ARG(EnvLookup, env) = process_env();
};

class ACCEL_API DVCLiveTracker : public GeneralTracker {
 public:
  explicit DVCLiveTracker(DVCLiveOptions options = {});
  ~DVCLiveTracker() override;

  std::string name() const override { return "dvclive"; }
  /// Creates the folder and removes an earlier run's files in it; throws
  /// naming the folder when it cannot.
  void start() override;
  void store_init_configuration(const TrackerConfig& config) override;
  void log(const LogValues& values, std::optional<int64_t> step) override;
  /// Writes the summary and dvc.yaml a last time; everything logged is in
  /// the files when it returns.
  void finish() override;
  /// Returns when everything logged so far is in the files; throws the
  /// first write error not yet thrown.
  void flush();

  const std::filesystem::path& dir() const { return options_.dir(); }

 private:
  struct Files;  // what the writing thread keeps
  DVCLiveOptions options_;
  std::shared_ptr<Files> files_;
  int64_t step_ = 0;
  bool warned_dropped_ = false;
};

}  // namespace accel
