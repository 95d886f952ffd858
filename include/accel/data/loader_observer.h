#pragma once
// What a loader tells whoever follows the training loop (the Accelerator's
// gradient state): a pass began, a batch was handed out and whether it is
// the last of the epoch, the pass ended. Gradient accumulation syncs at the
// end of a loader and gather_for_metrics trims the last batch from this.
#include <cstdint>

#include "accel/util/export.h"

namespace accel {

/// Where a loader stands, as gather_for_metrics needs it.
struct ACCEL_API LoaderProgress {
  /// The batch in hand is the last of the epoch.
  bool end_of_dataloader = false;
  /// Real rows in the last gathered batch (the rest repeat earlier samples);
  /// 0: none repeated; -1: unknown (no dataset length, or drop_last).
  int64_t remainder = -1;
};

class ACCEL_API LoaderObserver {
 public:
  virtual ~LoaderObserver() = default;
  /// `loader` identifies the loader (its address) while it iterates.
  virtual void on_pass_begin(const void* loader) = 0;
  virtual void on_batch(const void* loader, const LoaderProgress& progress) = 0;
  virtual void on_pass_end(const void* loader) = 0;
};

}  // namespace accel
