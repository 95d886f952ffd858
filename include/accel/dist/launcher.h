#pragma once
// Running a function in N local processes from inside a program: the
// debug_launcher / notebook_launcher rows. Each child is a fork of the
// caller, given the same environment `accel launch` gives a worker (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, ...), so the function
// sees an ordinary distributed job through accel::state().
//
// The caller must not have created accel::ProcessState yet (the children
// build their own), nor initialised CUDA (torch::manual_seed does, where a
// GPU exists): CUDA does not survive fork. Because children are forks, OMP_NUM_THREADS defaults to
// 1 in them, as torchrun does: OpenMP does not survive fork with more.
#include <chrono>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>

#include "accel/dist/worker_group.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API LaunchOptions {
  int num_processes = 2;
  std::string master_addr = "127.0.0.1";
  /// 0: pick a free port.
  int master_port = 0;
  /// Sets ACCELERATE_USE_CPU=true in the children (the default: tests and
  /// notebooks on any machine get Gloo on CPU).
  bool cpu = true;
  /// Extra variables for every child (after the launcher's own).
  std::map<std::string, std::string> env;
  std::chrono::milliseconds grace = std::chrono::seconds(5);
  std::chrono::milliseconds timeout{0};
};

/// Raised by debug_launcher when a rank fails; what() names it.
class ACCEL_API LaunchError : public std::runtime_error {
 public:
  LaunchError(const std::string& what, GroupResult result) : std::runtime_error(what), result_(std::move(result)) {}
  const GroupResult& result() const { return result_; }

 private:
  GroupResult result_;
};

/// Runs `fn` in options.num_processes processes and reports how each ended.
ACCEL_API GroupResult launch_processes(const std::function<void()>& fn, LaunchOptions options = {});

/// Like launch_processes, but throws LaunchError naming the failing rank.
ACCEL_API void debug_launcher(const std::function<void()>& fn, int num_processes = 2);
/// Notebook-style entry point: same, with full options.
ACCEL_API void notebook_launcher(const std::function<void()>& fn, LaunchOptions options);

/// A TCP port on `addr` that nothing listens on right now.
ACCEL_API int find_free_port(const std::string& addr = "127.0.0.1");

}  // namespace accel
