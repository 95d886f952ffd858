#pragma once
// KernelProfile: where the GPU's time goes in a stretch of a program, from
// LibTorch's own profiler (Kineto + CUPTI, the engine behind
// torch.profiler). It answers the two questions a speed investigation
// starts with: is the GPU busy (or waiting for the host to launch work),
// and which kernels take the busy time.
//
//   accel::KernelProfile profile;            // starts recording
//   for (int i = 0; i < 5; ++i) train_step();
//   auto summary = profile.stop("trace.json");  // optional Chrome trace
//   std::cout << summary.table(25);
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API KernelTime {
  std::string name;  // the kernel (or memcpy/memset) as CUPTI names it
  int64_t calls = 0;
  double total_ms = 0;
};

struct ACCEL_API KernelSummary {
  double wall_ms = 0;               // from start to stop
  double device_busy_ms = 0;        // union of the intervals when any GPU activity ran
  double device_sum_ms = 0;         // sum of all GPU activity (> busy when streams overlap)
  int64_t launches = 0;             // GPU activities recorded
  std::vector<KernelTime> kernels;  // by total time, largest first

  /// The top `rows` kernels with their share of busy time, under a line
  /// with wall time, busy time and launches.
  std::string table(int rows = 20) const;
};

class ACCEL_API KernelProfile {
 public:
  /// Starts recording CPU ops and GPU activity (GPU only where CUDA is).
  /// One profile at a time in a process: a second throws std::logic_error.
  KernelProfile();
  ~KernelProfile();
  KernelProfile(const KernelProfile&) = delete;
  KernelProfile& operator=(const KernelProfile&) = delete;

  /// Waits for the GPU, stops and summarises; with `trace_path` also writes
  /// a Chrome trace (chrome://tracing, Perfetto) there.
  KernelSummary stop(const std::optional<std::string>& trace_path = std::nullopt);

 private:
  bool running_ = false;
  int64_t start_ns_ = 0;
};

}  // namespace accel
