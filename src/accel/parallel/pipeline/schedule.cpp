#include "accel/parallel/pipeline/schedule.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "accel/util/check.h"

namespace accel {

std::string PipelineAction::str() const { return (kind == Kind::forward ? "F" : "B") + std::to_string(microbatch); }

PipelineScheduleKind pipeline_schedule_kind(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "gpipe") return PipelineScheduleKind::gpipe;
  if (lower == "1f1b") return PipelineScheduleKind::one_f_one_b;
  fail<std::invalid_argument>("unknown pipeline schedule '", name, "': expected GPipe or 1F1B");
}

std::string to_string(PipelineScheduleKind kind) { return kind == PipelineScheduleKind::gpipe ? "GPipe" : "1F1B"; }

namespace {

void check_schedule_args(int stage, int num_stages, int64_t microbatches) {
  ACCEL_CHECK_ARG(num_stages >= 1, "pipeline schedule: num_stages = ", num_stages, ", expected at least 1");
  ACCEL_CHECK_ARG(stage >= 0 && stage < num_stages, "pipeline schedule: stage ", stage, " is not in [0, ", num_stages,
                  ")");
  ACCEL_CHECK_ARG(microbatches >= 1, "pipeline schedule: ", microbatches, " micro-batches, expected at least 1");
}

PipelineAction forward(int64_t m) { return {PipelineAction::Kind::forward, m}; }
PipelineAction backward(int64_t m) { return {PipelineAction::Kind::backward, m}; }

}  // namespace

std::vector<PipelineAction> gpipe_schedule(int stage, int num_stages, int64_t microbatches) {
  check_schedule_args(stage, num_stages, microbatches);
  std::vector<PipelineAction> actions;
  actions.reserve(static_cast<size_t>(2 * microbatches));
  for (int64_t m = 0; m < microbatches; ++m) actions.push_back(forward(m));
  for (int64_t m = 0; m < microbatches; ++m) actions.push_back(backward(m));
  return actions;
}

std::vector<PipelineAction> one_f_one_b_schedule(int stage, int num_stages, int64_t microbatches) {
  check_schedule_args(stage, num_stages, microbatches);
  // The later a stage, the sooner its first backward can run: the last
  // stage has no warm-up, and each earlier one needs one more forward in
  // flight to keep the pipeline full.
  const int64_t warmup = std::min<int64_t>(num_stages - stage - 1, microbatches);
  std::vector<PipelineAction> actions;
  actions.reserve(static_cast<size_t>(2 * microbatches));
  int64_t next_forward = 0, next_backward = 0;
  for (; next_forward < warmup; ++next_forward) actions.push_back(forward(next_forward));
  for (; next_forward < microbatches; ++next_forward) {
    actions.push_back(forward(next_forward));
    actions.push_back(backward(next_backward++));
  }
  for (; next_backward < microbatches; ++next_backward) actions.push_back(backward(next_backward));
  return actions;
}

std::vector<PipelineAction> pipeline_schedule(PipelineScheduleKind kind, int stage, int num_stages,
                                              int64_t microbatches) {
  return kind == PipelineScheduleKind::gpipe ? gpipe_schedule(stage, num_stages, microbatches)
                                             : one_f_one_b_schedule(stage, num_stages, microbatches);
}

std::string to_string(const std::vector<PipelineAction>& actions) {
  std::string out;
  for (const auto& a : actions) out += (out.empty() ? "" : " ") + a.str();
  return out;
}

}  // namespace accel
