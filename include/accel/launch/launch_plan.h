#pragma once
// What `accel launch` will do, decided before anything starts: Accelerate's
// own rules (`_validate_launch_command` and the launcher it then picks) turn
// flags + config file into a plan: how many local workers, where the
// rendezvous is, and the environment each worker gets.
//
// The environment is Accelerate's, variable by variable: the simple
// launcher's (one process), or torchrun's per-rank variables on top of the
// multi-GPU / DeepSpeed launcher's. One deliberate extension: where
// Accelerate's simple launcher starts a single process however many were
// asked for (`--cpu --num_processes 4`, a MULTI_CPU config without mpirun),
// accel starts them all, each with torchrun's per-rank variables. Another:
// --gradient_accumulation_steps reaches the program in every mode
// (ACCELERATE_GRADIENT_ACCUMULATION_STEPS), where Accelerate passes it on
// only to DeepSpeed and otherwise ignores it.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "accel/launch/cluster_config.h"
#include "accel/launch/launch_args.h"
#include "accel/util/env.h"
#include "accel/util/export.h"

namespace accel::launch {

/// What the launcher needs to know about this machine.
struct ACCEL_API HostInfo {
  int gpus = -1;           // CUDA devices; -1: ask LibTorch when needed
  int physical_cores = 1;  // for Accelerate's CPU thread default
  /// The GPU count, asked of LibTorch only on first use: loading CUDA costs
  /// a launch that does not need it (--cpu, --num_processes given) ~0.4 s.
  int gpu_count() const;
  /// This machine (cores from /proc/cpuinfo; GPUs counted lazily).
  static HostInfo detect();
};

/// Which of Accelerate's launchers the flags and config select.
enum class LauncherKind { simple, multi_gpu, deepspeed };
ACCEL_API const char* to_string(LauncherKind kind);

struct ACCEL_API LaunchPlan {
  LauncherKind kind = LauncherKind::simple;
  int num_processes = 1;  // in the whole job
  int num_machines = 1;
  int machine_rank = 0;
  int local_processes = 1;  // started on this machine
  /// Per-rank variables (RANK, LOCAL_RANK, WORLD_SIZE, ...) are set: any
  /// launch but Accelerate's single-process simple one.
  bool per_rank_env = false;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string role = "default";
  /// The variables every worker gets on top of the launcher's own environment.
  std::map<std::string, std::string> env;
  /// Accelerate's "values were not passed ... defaults used" lines.
  std::vector<std::string> defaults_used;
  /// Other things worth saying before the start (a busy port replaced, ...).
  std::vector<std::string> notes;
  std::optional<std::string> config_file;  // the file that was read, if any

  int max_restarts = 0;
  int tee = 0;  // 0 none, 1 stdout, 2 stderr, 3 both
  std::optional<std::string> log_dir;
  double grace_period_s = 5.0;
  double monitor_interval_s = 0.1;

  std::string program;
  std::vector<std::string> program_args;
};

/// Builds the plan. `env` is the launcher's environment (OMP_NUM_THREADS,
/// PYTHONPATH, ... are read from it). Throws std::invalid_argument naming
/// the flag or key and what was expected.
ACCEL_API LaunchPlan plan_launch(LaunchArgs args, const EnvLookup& env = process_env(),
                                 const HostInfo& host = HostInfo::detect());

/// The variables local worker `local_rank` gets on top of the launcher's
/// environment, in attempt `restart_count` (0 for the first).
ACCEL_API std::map<std::string, std::string> worker_env(const LaunchPlan& plan, int local_rank, int restart_count = 0);

/// Whether the rendezvous store could not listen on `port` on this machine:
/// something listens there, or holds it bound without listening
/// (Accelerate's is_port_in_use sees only the first).
ACCEL_API bool port_in_use(int port);

}  // namespace accel::launch
