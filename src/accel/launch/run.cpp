#include "accel/launch/run.h"

#include <signal.h>

#include <chrono>
#include <optional>
#include <ostream>

#include "accel/dist/worker_group.h"
#include "accel/launch/output_pump.h"
#include "accel/launch/rendezvous_progress.h"

namespace accel::launch {
namespace {

extern "C" void forward_signal(int sig) { WorkerGroup::request_stop(sig); }

// Installs the forwarding handlers for the lifetime of a launch.
class SignalForwarding {
 public:
  SignalForwarding() {
    struct sigaction sa {};
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~SignalForwarding() {
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }

 private:
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[3];
};

}  // namespace

int run_launch(const LaunchPlan& plan, std::ostream& log) {
  SignalForwarding forwarding;
  WorkerGroupOptions options;
  options.grace = std::chrono::milliseconds(static_cast<long>(plan.grace_period_s * 1000));
  options.poll = std::chrono::milliseconds(std::max(1L, static_cast<long>(plan.monitor_interval_s * 1000)));
  std::vector<std::string> argv = {plan.program};
  argv.insert(argv.end(), plan.program_args.begin(), plan.program_args.end());
  const int first_rank = plan.machine_rank * plan.local_processes;

  for (int attempt = 0;; ++attempt) {
    WorkerGroup group(options);
    OutputPump pump(plan.tee, plan.log_dir.value_or(""), attempt);
    std::vector<std::pair<int, int>> fds;
    for (int local = 0; local < plan.local_processes; ++local) fds.push_back(pump.add_rank(first_rank + local));
    for (int local = 0; local < plan.local_processes; ++local) {
      if (WorkerGroup::stop_pending()) break;  // wait() below stops the ones started
      WorkerCommand cmd;
      cmd.argv = argv;
      cmd.env = worker_env(plan, local, attempt);
      cmd.stdout_fd = fds[local].first;
      cmd.stderr_fd = fds[local].second;
      group.spawn(first_rank + local, cmd);
    }
    pump.start();
    // Only where the launcher set the rendezvous up (not under mpirun/srun).
    std::optional<RendezvousProgress> rendezvous;
    if (plan.per_rank_env && plan.num_processes > 1 && plan.master_port > 0)
      rendezvous.emplace(plan.master_addr, plan.master_port, plan.num_processes);
    GroupResult result = group.wait();
    if (rendezvous) rendezvous->stop();
    pump.finish();
    if (result.ok()) return 0;
    log << "accel launch: " << result.describe() << std::endl;
    for (const auto& e : result.exits)
      if (!e.ok() && (!result.first_failure || e.rank != result.first_failure->rank))
        log << "accel launch:   " << e.describe() << std::endl;
    if (result.stop_requested || attempt >= plan.max_restarts) {
      if (plan.max_restarts > 0 && !result.stop_requested)
        log << "accel launch: giving up after " << plan.max_restarts << " restart(s)" << std::endl;
      return result.exit_status();
    }
    log << "accel launch: restarting the workers (restart " << attempt + 1 << " of " << plan.max_restarts << ")"
        << std::endl;
  }
}

}  // namespace accel::launch
