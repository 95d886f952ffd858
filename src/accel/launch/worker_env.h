#pragma once
// The variables `accel launch` gives its workers, Accelerate's variable by
// variable (launch_plan.h says where accel differs). Private to the
// library: plan_launch() fills LaunchPlan::env with it.
#include <string>
#include <vector>

#include "accel/launch/launch_args.h"
#include "accel/launch/launch_plan.h"
#include "accel/util/env.h"

namespace accel::launch {

/// Fills plan.env for plan.kind from the checked flags `args` (the config
/// file's values already in them). `ds_fields`: the deepspeed_config keys
/// the accelerate config sets, for ACCELERATE_CONFIG_DS_FIELDS; `parent`:
/// the launcher's own environment. Throws std::invalid_argument naming a
/// flag whose value no worker could use.
void build_worker_env(const LaunchArgs& args, const std::vector<std::string>& ds_fields, const EnvLookup& parent,
                      LaunchPlan& plan);

}  // namespace accel::launch
