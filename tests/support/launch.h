#pragma once
// What `accel launch` plans, asked by a test for a machine it describes.
#include <string>
#include <utility>
#include <vector>

#include "accel/launch/launch_plan.h"

namespace accel::testing {

/// The plan of `accel launch` for `flags` (named as on its command line,
/// without the dashes; "" for a switch) and `program`, on a machine of
/// `gpus` GPUs and `cores` physical cores whose environment is `env`.
launch::LaunchPlan plan_for(const std::vector<std::pair<std::string, std::string>>& flags, const EnvLookup& env,
                            int gpus = 0, int cores = 8, const std::string& program = "prog");

}  // namespace accel::testing
