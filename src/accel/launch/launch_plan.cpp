#include "accel/launch/launch_plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>

#include <torch/cuda.h>

#include "accel/dist/launcher.h"
#include "accel/launch/worker_env.h"
#include "accel/util/check.h"
#include "accel/util/checked_number.h"
#include "accel/util/excerpt.h"

namespace accel::launch {
namespace {

bool is_multi_device(const std::string& t) {
  static const std::set<std::string> multi = {"MULTI_GPU",  "MULTI_NPU", "MULTI_MLU", "MULTI_SDAA",
                                              "MULTI_MUSA", "MULTI_XPU", "MULTI_HPU", "MULTI_NEURON"};
  return multi.count(t) > 0;
}

int count_physical_cores() {
  std::ifstream f("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, physical = "0";
  while (std::getline(f, line)) {
    auto value = [&] {
      auto c = line.find(':');
      return c == std::string::npos ? "" : line.substr(c + 2);
    };
    if (line.rfind("physical id", 0) == 0) physical = value();
    if (line.rfind("core id", 0) == 0) cores.insert({physical, value()});
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  return std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
}

constexpr long long kMaxInt = std::numeric_limits<int>::max();
// More workers than this per core is a typo (10000 for 100), not a plan.
constexpr int kMaxWorkersPerCore = 64;

// An integer flag or key that must lie in [min, max] (and so fit an int).
int int_in(const LaunchArgs& a, const std::string& name, long long min, long long max) {
  const Value v = a.get(name);
  ACCEL_CHECK_ARG(v.kind == Value::Kind::integer, name, " '", excerpt(v.str()), "': expected an integer");
  return static_cast<int>(check_integer_in(v.integer, name, min, max));
}

// A duration flag, in seconds: finite, at least `min`, at most a day.
double seconds_in(const LaunchArgs& a, const std::string& name, double min) {
  const double s = a.get(name).number;
  ACCEL_CHECK_ARG(s >= min && s <= 86400, "--", name, " ", a.get(name).str(), ": expected seconds from ",
                  python_float(min), " to 86400");
  return s;
}

// Accelerate's get_int_from_env: the first of `names` that is set, else
// `fallback`; a value below `min` is refused (a local size of 0 would divide by zero).
long int_from_env(const EnvLookup& env, const std::vector<std::string>& names, long fallback, long min = 0) {
  for (const auto& n : names)
    if (auto v = env_string(env, n)) return parse_integer_in(*v, "environment variable " + n, min, kMaxInt);
  return fallback;
}

// Copies the config file into the flag namespace the way Accelerate does.
void apply_config(LaunchArgs& a, const ClusterConfig& cfg) {
  const std::string dt = cfg.get("distributed_type").str();
  if (!a.flag("multi_gpu") && !a.flag("tpu") && !a.flag("use_deepspeed") && !a.flag("use_fsdp") &&
      !a.flag("use_megatron_lm")) {
    a.set("use_deepspeed", Value::of_bool(dt == "DEEPSPEED"));
    a.set("multi_gpu", Value::of_bool(is_multi_device(dt)));
    a.set("tpu", Value::of_bool(dt == "XLA"));
    a.set("use_fsdp", Value::of_bool(dt == "FSDP"));
    a.set("use_megatron_lm", Value::of_bool(dt == "MEGATRON_LM"));
    a.set("use_parallelism_config", Value::of_bool(!cfg.section("parallelism_config").empty()));
  }
  if (a.get("gpu_ids").is_none())
    a.set("gpu_ids", cfg.get("gpu_ids").is_none() ? Value::of_text("all") : cfg.get("gpu_ids"));
  if (a.flag("multi_gpu") && a.get("num_machines").is_none()) a.set("num_machines", cfg.get("num_machines"));
  const std::string gpu_ids = a.get("gpu_ids").str();
  const long machines = a.get("num_machines").is_none() ? 1 : a.get("num_machines").integer;
  const bool one_gpu_id = gpu_ids != "all" && std::count(gpu_ids.begin(), gpu_ids.end(), ',') == 0;
  ACCEL_CHECK_ARG(!(one_gpu_id && a.flag("multi_gpu") && machines <= 1), "gpu_ids '", gpu_ids,
                  "': multi-GPU needs at least two GPU ids (or 'all'), e.g. --gpu_ids 0,1");
  for (const auto& [name, sec] : cfg.sections())
    for (const auto& [key0, v] : sec) {
      std::string key = key0;
      if (name == "fsdp_config" && key.rfind("fsdp", 0) != 0) key = "fsdp_" + key;
      if (name == "fp8_config" && key.rfind("fp8", 0) != 0) key = "fp8_" + key;
      if (name == "dynamo_config" && key.rfind("dynamo_", 0) != 0) key = "dynamo_" + key;
      if (!a.given.count(key)) a.set(key, v);
    }
  static const std::set<std::string> separate = {"compute_environment", "mixed_precision", "distributed_type"};
  for (const auto& [name, v] : cfg.values())
    if (!separate.count(name) && a.get(name).is_none()) a.set(name, v);
  if (!a.flag("debug")) a.set("debug", cfg.get("debug"));
}

// ---- Accelerate's _validate_launch_command -------------------------------

// What the config file says that the workers' environment needs later.
struct ConfigFacts {
  std::vector<std::string> ds_fields;  // its deepspeed_config keys (ACCELERATE_CONFIG_DS_FIELDS)
  bool mixed_precision_from_config = false;
};

void check_exclusive_flags(const LaunchArgs& a) {
  const int paradigms =
      a.flag("multi_gpu") + a.flag("cpu") + a.flag("tpu") + a.flag("use_deepspeed") + a.flag("use_fsdp");
  ACCEL_CHECK_ARG(paradigms <= 1,
                  "You can only use one of --cpu, --multi_gpu, --tpu, --use_deepspeed, --use_fsdp at a time.");
  // Before the config file is read, as Accelerate checks it. Its test also
  // names fsdp_version 1, but compares the flag's string with the number 1,
  // so only a missing --use_fsdp is refused there, and here.
  ACCEL_CHECK_ARG(!a.flag("use_parallelism_config") || a.flag("use_fsdp"),
                  "You cannot use `--use_parallelism_config` without `--use_fsdp` and `--fsdp_version=2`.");
  const Value processes = a.get("num_processes");
  ACCEL_CHECK_ARG(!a.flag("multi_gpu") || processes.is_none() || processes.integer >= 2, "--num_processes ",
                  processes.str(), ": --multi_gpu needs at least 2 processes");
}

// The flags not given take the file's values.
ConfigFacts read_config_file(LaunchArgs& a, const std::string& path, LaunchPlan& plan) {
  ClusterConfig cfg = ClusterConfig::load(path);
  plan.config_file = path;
  apply_config(a, cfg);
  ConfigFacts facts;
  for (const auto& [k, _] : cfg.section("deepspeed_config")) facts.ds_fields.push_back(k);
  if (!a.given.count("mixed_precision")) {
    if (cfg.get("mixed_precision").is_none()) {
      a.set("mixed_precision", Value::of_text("no"));
    } else {
      a.set("mixed_precision", cfg.get("mixed_precision"));
      facts.mixed_precision_from_config = true;
    }
  }
  if (a.get("dynamo_backend").is_none()) a.set("dynamo_backend", Value::of_text("no"));
  ACCEL_CHECK_ARG(a.get("num_processes").str() != "-1", path, " does not set num_processes: pass --num_processes");
  return facts;
}

// Without a config file: Accelerate's defaults, each one said (defaults_used).
void default_without_config(LaunchArgs& a, const HostInfo& host, LaunchPlan& plan) {
  std::vector<std::string>& warned = plan.defaults_used;
  if (a.get("num_processes").is_none()) {
    // accel: at least one process, also on a machine without GPUs.
    a.set("num_processes", Value::of_int(std::max(1, host.gpu_count())));
    warned.push_back("\t`--num_processes` was set to a value of `" + a.get("num_processes").str() + "`");
  }
  if (!a.flag("multi_gpu") && !a.flag("cpu") && a.get("num_processes").integer > 1 && host.gpu_count() > 1) {
    warned.push_back(
        "\t\tMore than one GPU was found, enabling multi-GPU training.\n"
        "\t\tIf this was unintended please pass in `--num_processes=1`.");
    a.set("multi_gpu", Value::of_bool(true));
  }
  if (a.get("num_machines").is_none()) {
    warned.push_back("\t`--num_machines` was set to a value of `1`");
    a.set("num_machines", Value::of_int(1));
  }
  if (a.get("mixed_precision").is_none()) {
    // Accelerate says "set to 'no'", but the program's own
    // AcceleratorOptions::mixed_precision wins over the launcher's.
    warned.push_back(
        "\t`--mixed_precision` was not passed: the program trains in what its code asks for "
        "(AcceleratorOptions::mixed_precision), else `'no'`");
    a.set("mixed_precision", Value::of_text("no"));
  }
  a.set("use_cpu", a.get("cpu"));
  if (a.get("dynamo_backend").is_none()) {
    warned.push_back("\t`--dynamo_backend` was set to a value of `'no'`");
    a.set("dynamo_backend", Value::of_text("no"));
  }
}

// Every count is checked against its range (and the int it is kept in)
// before anything divides by it or starts that many processes.
void read_counts(LaunchArgs& a, LaunchPlan& plan) {
  if (a.get("num_machines").is_none()) a.set("num_machines", Value::of_int(1));
  if (a.get("machine_rank").is_none()) a.set("machine_rank", Value::of_int(0));
  plan.num_processes = int_in(a, "num_processes", 1, kMaxInt);
  plan.num_machines = int_in(a, "num_machines", 1, kMaxInt);
  plan.machine_rank = int_in(a, "machine_rank", 0, plan.num_machines - 1);
}

// Accelerate's CPU thread default: OMP_NUM_THREADS, else on CPU the
// physical cores shared among the local workers.
void default_cpu_threads(LaunchArgs& a, const EnvLookup& env, const HostInfo& host, LaunchPlan& plan) {
  if (!a.get("num_cpu_threads_per_process").is_none()) {
    int_in(a, "num_cpu_threads_per_process", 1, kMaxInt);
    return;
  }
  a.set("num_cpu_threads_per_process", Value::of_int(int_from_env(env, {"OMP_NUM_THREADS"}, 1)));
  if (!a.flag("use_cpu") || int_from_env(env, {"OMP_NUM_THREADS"}, 0) != 0) return;
  const long local_size =
      int_from_env(env, {"MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE"},
                   std::max(plan.num_processes / plan.num_machines, 1), 1);
  const long threads = host.physical_cores / local_size;
  if (threads > 1) {
    a.set("num_cpu_threads_per_process", Value::of_int(threads));
    plan.defaults_used.push_back("\t`--num_cpu_threads_per_process` was set to `" + std::to_string(threads) +
                                 "` to improve out-of-box performance when training on CPUs");
  }
}

ConfigFacts validate_command(LaunchArgs& a, const EnvLookup& env, const HostInfo& host, LaunchPlan& plan) {
  check_exclusive_flags(a);
  ConfigFacts facts;
  const std::string default_file = default_config_path();
  if (!a.get("config_file").is_none())
    facts = read_config_file(a, a.get("config_file").str(), plan);
  else if (std::filesystem::is_regular_file(default_file) && !a.flag("cpu"))
    facts = read_config_file(a, default_file, plan);
  else
    default_without_config(a, host, plan);
  read_counts(a, plan);
  default_cpu_threads(a, env, host, plan);
  return facts;
}

// ---- which launcher (launch_command) -------------------------------------

LauncherKind choose_launcher(const LaunchArgs& a) {
  const bool cpu = a.flag("cpu");
  ACCEL_CHECK_ARG(!a.flag("tpu") || cpu, "distributed_type XLA / --tpu: TPUs are not supported by accel");
  ACCEL_CHECK_ARG(!a.flag("use_megatron_lm") || cpu,
                  "distributed_type MEGATRON_LM / --use_megatron_lm: Megatron-LM is not supported by accel");
  ACCEL_CHECK_ARG(!a.flag("module"), "--module: accel launches programs, not Python modules");
  ACCEL_CHECK_ARG(a.get("mpirun_hostfile").is_none(),
                  "mpirun_hostfile: accel does not launch through mpirun; start `accel launch` on each machine with "
                  "--machine_rank instead");
  if (a.flag("use_deepspeed") && !cpu) return LauncherKind::deepspeed;
  if ((a.flag("use_fsdp") || a.flag("multi_gpu")) && !cpu) return LauncherKind::multi_gpu;
  return LauncherKind::simple;
}

// How many workers start on this machine, and whether they get per-rank variables.
void plan_workers(const HostInfo& host, LaunchPlan& plan) {
  ACCEL_CHECK_ARG(plan.num_processes % plan.num_machines == 0, "num_processes ", plan.num_processes,
                  " is not a multiple of num_machines ", plan.num_machines,
                  ": each machine starts num_processes / num_machines");
  plan.local_processes = plan.num_processes / plan.num_machines;
  const int most = std::max(host.physical_cores, 1) * kMaxWorkersPerCore;
  ACCEL_CHECK_ARG(plan.local_processes <= most, "num_processes ", plan.num_processes, ": ", plan.local_processes,
                  " workers on this machine, which has ", host.physical_cores, " CPU core(s); expected at most ", most,
                  " (each worker is a whole program)");
  if (plan.local_processes > host.physical_cores)
    plan.notes.push_back("starting " + std::to_string(plan.local_processes) + " workers on " +
                         std::to_string(host.physical_cores) +
                         " CPU core(s): they will share the cores (pass --num_processes to start fewer)");
  plan.per_rank_env = plan.kind != LauncherKind::simple || plan.num_processes > 1 || plan.num_machines > 1;
}

// Where the ranks meet: rank 0's address, and a port its store can listen on.
void choose_rendezvous(const LaunchArgs& a, LaunchPlan& plan) {
  const bool several_machines = plan.num_machines > 1;
  ACCEL_CHECK_ARG(!several_machines || !a.get("main_process_ip").is_none(), "num_machines ", plan.num_machines,
                  ": pass --main_process_ip (the address of the machine of rank 0)");
  ACCEL_CHECK_ARG(!several_machines || !a.get("main_process_port").is_none() || plan.kind != LauncherKind::simple,
                  "num_machines ", plan.num_machines, ": pass --main_process_port");
  plan.master_addr = a.get("main_process_ip").is_none() ? "127.0.0.1" : a.get("main_process_ip").str();
  plan.master_port = a.get("main_process_port").is_none() ? 29500 : int_in(a, "main_process_port", 0, 65535);
  if (!plan.per_rank_env) return;
  if (plan.master_port == 0) {
    ACCEL_CHECK_ARG(!several_machines, "main_process_port 0 (a free port) only works on one machine");
    plan.master_port = find_free_port(plan.master_addr);
  } else if ((!several_machines || plan.machine_rank == 0) && port_in_use(plan.master_port)) {
    ACCEL_CHECK_ARG(!several_machines, "main_process_port ", plan.master_port,
                    " is already in use on this machine: pick another one");
    const int port = find_free_port(plan.master_addr);
    plan.notes.push_back("Port " + std::to_string(plan.master_port) + " is already in use; using free port " +
                         std::to_string(port) + " instead (pass --main_process_port to choose).");
    plan.master_port = port;
  }
}

// torchrun's agent settings, and what to run.
void read_run_settings(const LaunchArgs& a, LaunchPlan& plan) {
  plan.role = a.get("role").str();
  plan.max_restarts = int_in(a, "max_restarts", 0, kMaxInt);
  plan.tee = static_cast<int>(parse_integer_in(a.get("tee").str(), "--tee", 0, 3));
  if (!a.get("log_dir").is_none()) plan.log_dir = a.get("log_dir").str();
  plan.grace_period_s = seconds_in(a, "grace_period", 0);
  plan.monitor_interval_s = seconds_in(a, "monitor_interval", 0.001);
  plan.program = a.program;
  plan.program_args = a.program_args;
  ACCEL_CHECK_ARG(!plan.program.empty(), "no program to launch: accel launch [flags] PROGRAM [ARGS...]");
}

}  // namespace

int HostInfo::gpu_count() const {
  if (gpus >= 0) return gpus;
  static const int count = static_cast<int>(torch::cuda::device_count());
  return count;
}

HostInfo HostInfo::detect() {
  HostInfo h;
  h.physical_cores = count_physical_cores();
  return h;
}

const char* to_string(LauncherKind kind) {
  switch (kind) {
    case LauncherKind::simple: return "simple";
    case LauncherKind::multi_gpu: return "multi-GPU (torchrun)";
    case LauncherKind::deepspeed: return "DeepSpeed (torchrun)";
  }
  return "?";
}

bool port_in_use(int port) {
  // What the rendezvous store will do on this port: bind the wildcard
  // address with SO_REUSEADDR (as c10d's TCPStore does, so connections of a
  // previous run in TIME_WAIT do not count) and listen. That fails for a
  // port another socket listens on, and also for one that is only bound,
  // which a connect() probe cannot see.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  const bool used = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 1) != 0;
  close(fd);
  return used;
}

LaunchPlan plan_launch(LaunchArgs a, const EnvLookup& env, const HostInfo& host) {
  LaunchPlan plan;
  ConfigFacts config = validate_command(a, env, host, plan);
  plan.kind = choose_launcher(a);
  plan_workers(host, plan);
  choose_rendezvous(a, plan);
  if (config.mixed_precision_from_config) config.ds_fields.push_back("mixed_precision");
  build_worker_env(a, config.ds_fields, env, plan);
  read_run_settings(a, plan);
  return plan;
}

}  // namespace accel::launch
