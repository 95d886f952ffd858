#include "support/launch.h"

namespace accel::testing {

launch::LaunchPlan plan_for(const std::vector<std::pair<std::string, std::string>>& flags, const EnvLookup& env,
                            int gpus, int cores, const std::string& program) {
  launch::LaunchArgs args = launch::LaunchArgs::defaults();
  for (const auto& [name, value] : flags) args.set_flag(name, value);
  args.program = program;
  launch::HostInfo host;
  host.gpus = gpus;
  host.physical_cores = cores;
  return launch::plan_launch(args, env, host);
}

}  // namespace accel::testing
