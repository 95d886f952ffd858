#pragma once
// Supervision of a group of local worker processes, shared by the
// in-process launcher (dist/launcher.h) and `accel launch`.
//
// The rule: when one worker exits non-zero or dies by a signal, the others
// get SIGTERM, then SIGKILL after a grace period, and the result names the
// first failing rank and how it failed. Nothing is left behind: a spawned
// worker runs in its own process group (as torchrun's do), and the signals
// go to the whole group, so the processes a worker started stop with it.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "accel/util/export.h"

namespace accel {

struct ACCEL_API WorkerExit {
  int rank = -1;
  int exit_code = 0;           // when exited normally
  int signal = 0;              // when killed by a signal
  bool stopped_by_us = false;  // ended because another rank failed or a stop was requested
  bool ok() const { return signal == 0 && exit_code == 0; }
  /// "rank 1 exited with status 3" / "rank 0 was killed by signal 9 (Killed)".
  std::string describe() const;
};

struct ACCEL_API GroupResult {
  std::vector<WorkerExit> exits;            // one per rank, in rank order
  std::optional<WorkerExit> first_failure;  // the failure that ended the group
  bool timed_out = false;
  bool stop_requested = false;
  int stop_signal = 0;  // the signal passed to request_stop(), when one was
  bool ok() const { return !first_failure && !timed_out && !stop_requested; }
  /// The exit status a launcher should end with: 0, the failing rank's
  /// status, 128 + its signal, 124 on timeout, 128 + the stop signal.
  int exit_status() const;
  std::string describe() const;
};

struct ACCEL_API WorkerGroupOptions {
  /// Between SIGTERM and SIGKILL when stopping the survivors.
  std::chrono::milliseconds grace = std::chrono::seconds(5);
  /// Stop everyone after this long (0: no limit).
  std::chrono::milliseconds timeout{0};
  /// How often wait() looks at the workers.
  std::chrono::milliseconds poll{10};
};

/// A program for WorkerGroup::spawn to run.
struct ACCEL_API WorkerCommand {
  /// argv[0] is the program: a path, or a name looked up on PATH.
  std::vector<std::string> argv;
  /// Variables set (or replaced) on top of the launcher's environment.
  std::map<std::string, std::string> env;
  /// Where the worker's stdout / stderr go (-1: the launcher's own).
  int stdout_fd = -1;
  int stderr_fd = -1;
};

class ACCEL_API WorkerGroup {
 public:
  explicit WorkerGroup(WorkerGroupOptions options = {});
  WorkerGroup(const WorkerGroup&) = delete;
  WorkerGroup& operator=(const WorkerGroup&) = delete;
  ~WorkerGroup();

  /// Registers a started worker.
  void add(int rank, pid_t pid);
  /// Forks a worker that runs `body` and exits with its return value; an
  /// exception escaping `body` is printed with the rank and exits 1. The
  /// child dies with its parent (PR_SET_PDEATHSIG).
  pid_t fork_worker(int rank, const std::function<int()>& body);
  /// Starts `command` as worker `rank` (fork + exec) in a session and
  /// process group of its own. Throws std::runtime_error naming the program
  /// when it cannot be executed (not found, not executable). The worker dies
  /// with the launcher (PR_SET_PDEATHSIG).
  pid_t spawn(int rank, const WorkerCommand& command);

  /// Waits for every worker. Stops the group on the first failure, on
  /// timeout, or when request_stop() was called (e.g. from a signal handler).
  GroupResult wait();

  /// Async-signal-safe: asks wait() to stop the group with `sig`.
  static void request_stop(int sig);
  /// Whether request_stop() was called and wait() has not acted on it yet:
  /// a launcher checks it between spawns, so that a stop while workers are
  /// starting ends the start instead of waiting for every worker to start.
  static bool stop_pending();

  const std::vector<std::pair<int, pid_t>>& workers() const { return workers_; }

 private:
  void kill_running();
  // Sends `sig` to worker i's process group (spawned workers) or to it.
  void signal(size_t i, int sig);

  WorkerGroupOptions options_;
  std::vector<std::pair<int, pid_t>> workers_;  // (rank, pid)
  std::vector<bool> reaped_;
  std::vector<bool> own_group_;       // spawned: leads a process group of its own
  int64_t* failure_times_ = nullptr;  // shared with forked workers, by rank
};

}  // namespace accel
