#pragma once
// ProgressBar: how far a long loop has come, drawn on the main process as
// tqdm draws it:
//   train  42%|████▏     | 420/1000 [00:10<00:14, 41.9it/s, loss=0.125]
// On a terminal the line is redrawn in place (at most ten times a second);
// elsewhere (CI logs, a file) a plain line is written every
// line_interval seconds and at the end. ACCEL_DISABLE_PROGRESS_BARS=1 or
// TQDM_DISABLE=1 turn every bar off, as does enabled(false).
//
//   auto bar = accelerator.progress_bar(total_steps, accel::ProgressOptions().desc("train"));
//   for (...) { ...; bar.update(); }
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <torch/arg.h>

#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel {

/// Where a bar is drawn. (A name of its own: TORCH_ARG spells `const T&`,
/// which for `std::FILE*` would read as a pointer to a const FILE.)
using ProgressStream = std::FILE*;

struct ACCEL_API ProgressOptions {
  /// Written before the bar.
  TORCH_ARG(std::string, desc) = "";
  /// What one update() counts ("it", "step", "B").
  TORCH_ARG(std::string, unit) = "it";
  /// Unset: on unless the environment turns bars off.
  TORCH_ARG(std::optional<bool>, enabled) = std::nullopt;
  /// Where the bar is drawn.
  TORCH_ARG(ProgressStream, out) = stderr;
  /// Not a terminal: seconds between two lines.
  TORCH_ARG(double, line_interval) = 30.0;
  /// A terminal's width is read from COLUMNS; this when unset.
  TORCH_ARG(int, width) = 100;
  /// Counts and rates in binary multiples of the unit ("1.50GiB/4.00GiB",
  /// "512.00MiB/s"): for bars that count bytes.
  TORCH_ARG(bool, unit_scale) = false;
};

/// The bar's line for `done` of `total` (total <= 0: unknown, no bar or ETA)
/// after `elapsed` seconds, at most `width` characters wide when it has a bar;
/// `unit_scale` as in ProgressOptions.
ACCEL_API std::string format_progress(std::string_view desc, int64_t done, int64_t total, double elapsed,
                                      std::string_view unit, std::string_view postfix, int width,
                                      bool unit_scale = false);

class ACCEL_API ProgressBar {
 public:
  /// `total` <= 0: counts without a bar or ETA.
  explicit ProgressBar(int64_t total, ProgressOptions options = {});
  /// close()
  ~ProgressBar();
  /// A moved-from bar may only be destroyed or assigned to.
  ProgressBar(ProgressBar&&) noexcept;
  ProgressBar& operator=(ProgressBar&&) noexcept;

  void update(int64_t n = 1);
  /// Shown after the rate ("loss=0.125"); Accelerator::log sets it from the
  /// values whose name holds "loss".
  void set_postfix(std::string postfix);
  /// For work whose size becomes known as it goes (a checkpoint's files).
  void set_total(int64_t total);
  /// Draws the last state and ends the line; later updates are ignored.
  void close();

  bool enabled() const;
  int64_t count() const;

 private:
  struct State;
  friend class Accelerator;  // keeps a weak reference to show logged losses
  static void set_postfix(const std::shared_ptr<State>& state, std::string postfix);
  std::shared_ptr<State> state_;
};

/// Whether ACCEL_DISABLE_PROGRESS_BARS or TQDM_DISABLE (1/true/yes/on)
/// turn bars off; throws naming a value that is not a boolean.
ACCEL_API bool progress_bars_disabled_by_environment(const EnvLookup& env);

}  // namespace accel
