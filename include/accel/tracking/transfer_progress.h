#pragma once
// TransferProgress: a bar in bytes for saving and loading large checkpoints
// (save_state, load_state, save_model, load_model_weights):
//   save_state  37%|███▋      | 1.48GiB/4.00GiB [00:02<00:03, 740.12MiB/s]
//
// A scope opened on the thread that does the work. The file code inside it
// says how many tensor bytes it is about to move (expect) and has moved
// (advance); the scope's bar appears once the bytes expected reach
// min_bytes (1 GiB by default: about a second on a fast local disk, many on
// a network one), so small checkpoints print nothing. A scope opened inside
// another adds to the outer one: save_state's files make one bar. The total
// grows as each file starts (a save_state shows the optimizer's bytes
// before the model's are known), and the last line holds the whole.
//
// The bar is a ProgressBar (tracking/progress.h): redrawn on a terminal,
// plain lines elsewhere, off by ACCEL_DISABLE_PROGRESS_BARS / TQDM_DISABLE
// or bar().enabled(false).
#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include "accel/tracking/progress.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API TransferProgressOptions {
  /// The bar appears once this many bytes are expected.
  TORCH_ARG(int64_t, min_bytes) = int64_t{1} << 30;
  /// How it is drawn; its desc and unit are set by the scope.
  TORCH_ARG(ProgressOptions, bar) = ProgressOptions().line_interval(10.0);
};

class ACCEL_API TransferProgress {
 public:
  /// Opens a scope named `desc` ("save_state") on this thread. Throws
  /// naming a negative min_bytes.
  explicit TransferProgress(std::string desc, TransferProgressOptions options = {});
  /// Ends the bar's line, if it was drawn.
  ~TransferProgress();
  TransferProgress(const TransferProgress&) = delete;
  TransferProgress& operator=(const TransferProgress&) = delete;

  /// `bytes` are about to be moved by this thread (no scope open: ignored).
  static void expect(int64_t bytes);
  /// `bytes` were moved by this thread (no scope open: ignored).
  static void advance(int64_t bytes);

  /// What the scope has counted so far (an inner scope: the outer's).
  int64_t expected() const;
  int64_t moved() const;
  /// Whether a bar was drawn (its bytes reached min_bytes, bars enabled).
  bool shown() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
  bool owner_ = false;
};

}  // namespace accel
