#pragma once
// Running a LaunchPlan: start the local workers, supervise them through
// accel::WorkerGroup, restart the group up to plan.max_restarts times.
//
// SIGINT / SIGTERM / SIGHUP sent to the launcher are forwarded to every
// worker; when one worker fails (non-zero exit, killed by a signal) the
// others get SIGTERM, then SIGKILL after plan.grace_period_s, and the
// launcher reports the failing rank and its status.
#include <iosfwd>

#include "accel/launch/launch_plan.h"
#include "accel/util/export.h"

namespace accel::launch {

/// Runs the plan; returns the status the launcher should exit with (0, the
/// failing rank's status, 128 + signal). Messages go to `log`.
ACCEL_API int run_launch(const LaunchPlan& plan, std::ostream& log);

}  // namespace accel::launch
