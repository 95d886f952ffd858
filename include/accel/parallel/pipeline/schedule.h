#pragma once
// Pipeline schedules as explicit per-stage action lists: which micro-batch
// each stage runs forward or backward, in what order. The runner
// (pipeline/runner.h) executes a list; the sends and receives between
// neighbouring stages follow from it (a forward receives its input from the
// previous stage and sends its output on; a backward receives the output's
// gradient from the next stage and sends the input's back).
//
//   GPipe  (Huang et al.; torch.distributed.pipelining's ScheduleGPipe): every
//          forward, then every backward. Simple; each stage keeps the
//          activations of all micro-batches until its backwards run.
//   1F1B   (PipeDream-Flush; Megatron-LM's non-interleaved schedule,
//          pipelining's Schedule1F1B): stage s of p first runs
//          min(p - s - 1, m) warm-up forwards, then alternates one forward
//          and one backward, then runs the cool-down backwards. A stage
//          keeps at most p - s micro-batches' activations.
//
// Stage 1 of 2 with 4 micro-batches: GPipe F0 F1 F2 F3 B0 B1 B2 B3, 1F1B
// F0 B0 F1 B1 F2 B2 F3 B3; stage 0 of 2 under 1F1B: F0 F1 B0 F2 B1 F3 B2 B3.
#include <cstdint>
#include <string>
#include <vector>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API PipelineAction {
  enum class Kind { forward, backward };
  Kind kind = Kind::forward;
  int64_t microbatch = 0;

  bool operator==(const PipelineAction&) const = default;
  /// "F3" or "B3".
  std::string str() const;
};

enum class PipelineScheduleKind { gpipe, one_f_one_b };

/// "gpipe" or "1f1b" (any case; also "GPipe", "1F1B"). Anything else throws
/// std::invalid_argument naming it and the known names.
ACCEL_API PipelineScheduleKind pipeline_schedule_kind(const std::string& name);
ACCEL_API std::string to_string(PipelineScheduleKind kind);

/// The actions of stage `stage` of `num_stages` over `microbatches`
/// micro-batches. Throws std::invalid_argument naming the values when
/// num_stages < 1, stage is not in [0, num_stages) or microbatches < 1.
ACCEL_API std::vector<PipelineAction> gpipe_schedule(int stage, int num_stages, int64_t microbatches);
ACCEL_API std::vector<PipelineAction> one_f_one_b_schedule(int stage, int num_stages, int64_t microbatches);
ACCEL_API std::vector<PipelineAction> pipeline_schedule(PipelineScheduleKind kind, int stage, int num_stages,
                                                        int64_t microbatches);

/// The actions written as "F0 F1 B0 ..." (for messages and tests).
ACCEL_API std::string to_string(const std::vector<PipelineAction>& actions);

}  // namespace accel
