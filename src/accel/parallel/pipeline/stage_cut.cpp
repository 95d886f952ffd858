#include "accel/parallel/pipeline/stage_cut.h"

#include <stdexcept>

#include "accel/util/check.h"

namespace accel {

std::vector<FoundUnit> pipeline_units(torch::nn::Module& model) {
  std::vector<FoundUnit> out;
  for (auto& u : find_units(model)) {
    if (u.path.empty()) continue;  // the model itself: nothing to cut between
    // find_units lists parents first, so a nested unit follows its parent.
    if (!out.empty() && u.path.starts_with(out.back().path + ".")) continue;
    out.push_back(std::move(u));
  }
  return out;
}

std::vector<UnitSpan> even_stage_cut(int64_t units, int stages) {
  ACCEL_CHECK_ARG(stages >= 1, "pipeline cut: ", stages, " stages, expected at least 1");
  ACCEL_CHECK_ARG(stages <= units, "pipeline cut: ", stages, " stages for a model of ", units,
                  " units; each stage needs at least one unit, so at most ", units, " stages");
  std::vector<UnitSpan> spans;
  const int64_t base = units / stages, extra = units % stages;
  int64_t begin = 0;
  for (int s = 0; s < stages; ++s) {
    const int64_t len = base + (s < extra ? 1 : 0);
    spans.push_back({begin, begin + len});
    begin += len;
  }
  return spans;
}

namespace {

std::string unit_list(const std::vector<FoundUnit>& units) {
  std::string out;
  for (const auto& u : units) out += (out.empty() ? "" : ", ") + u.path;
  return out;
}

}  // namespace

std::vector<UnitSpan> cut_stages(torch::nn::Module& model, int stages, const std::vector<std::string>& split_points) {
  const auto units = pipeline_units(model);
  const auto n = static_cast<int64_t>(units.size());
  ACCEL_CHECK_ARG(n > 0, "pipeline cut: the model has no units to cut between (wrap its blocks in accel::Unit)");
  if (split_points.empty()) return even_stage_cut(n, stages);
  ACCEL_CHECK_ARG(stages >= 1, "pipeline cut: ", stages, " stages, expected at least 1");
  ACCEL_CHECK_ARG(static_cast<int>(split_points.size()) == stages - 1, "pipeline cut: ", split_points.size(),
                  " split points for ", stages, " stages, expected ", stages - 1);
  std::vector<UnitSpan> spans;
  int64_t begin = 0;
  for (const auto& point : split_points) {
    int64_t at = -1;
    for (int64_t i = 0; i < n; ++i) {
      const auto& u = units[static_cast<size_t>(i)];
      if (point == u.path) at = i;
      ACCEL_CHECK_ARG(!point.starts_with(u.path + "."), "pipeline cut: split point '", point, "' is inside unit '",
                      u.path, "' (", u.slot->class_name(), ") and would split it; a pipeline is cut only between ",
                      "units: ", unit_list(units));
    }
    ACCEL_CHECK_ARG(at >= 0, "pipeline cut: split point '", point,
                    "' is not a unit of the model; its units are: ", unit_list(units));
    ACCEL_CHECK_ARG(at > begin, "pipeline cut: split point '", point, "' (unit ", at,
                    ") leaves the stage before it no unit; split points must be distinct units after the first, ",
                    "in model order");
    spans.push_back({begin, at});
    begin = at;
  }
  spans.push_back({begin, n});
  return spans;
}

}  // namespace accel
