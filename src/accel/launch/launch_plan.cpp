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
#include "accel/util/checked_number.h"
#include "accel/util/excerpt.h"

namespace accel::launch {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}
std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::toupper);
  return s;
}

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
  if (v.kind != Value::Kind::integer)
    throw std::invalid_argument(name + " '" + excerpt(v.str()) + "': expected an integer");
  return static_cast<int>(check_integer_in(v.integer, name, min, max));
}

// A duration flag, in seconds: finite, at least `min`, at most a day.
double seconds_in(const LaunchArgs& a, const std::string& name, double min) {
  const double s = a.get(name).number;
  if (!(s >= min && s <= 86400))
    throw std::invalid_argument("--" + name + " " + a.get(name).str() + ": expected seconds from " + python_float(min) +
                                " to 86400");
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
  }
  if (a.get("gpu_ids").is_none())
    a.set("gpu_ids", cfg.get("gpu_ids").is_none() ? Value::of_text("all") : cfg.get("gpu_ids"));
  if (a.flag("multi_gpu") && a.get("num_machines").is_none()) a.set("num_machines", cfg.get("num_machines"));
  const std::string gpu_ids = a.get("gpu_ids").str();
  const long machines = a.get("num_machines").is_none() ? 1 : a.get("num_machines").integer;
  if (gpu_ids != "all" && std::count(gpu_ids.begin(), gpu_ids.end(), ',') == 0 && a.flag("multi_gpu") && machines <= 1)
    throw std::invalid_argument("gpu_ids '" + gpu_ids +
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

std::string str_bool(const Value& v) { return v.str(); }

void add_dynamo_env(const LaunchArgs& a, std::map<std::string, std::string>& env) {
  env["ACCELERATE_DYNAMO_BACKEND"] = upper(a.get("dynamo_backend").str());
  env["ACCELERATE_DYNAMO_MODE"] = a.get("dynamo_mode").str();
  env["ACCELERATE_DYNAMO_USE_FULLGRAPH"] = str_bool(a.get("dynamo_use_fullgraph"));
  env["ACCELERATE_DYNAMO_USE_DYNAMIC"] = str_bool(a.get("dynamo_use_dynamic"));
  env["ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION"] = str_bool(a.get("dynamo_use_regional_compilation"));
}

void add_precision_env(const LaunchArgs& a, std::map<std::string, std::string>& env) {
  const std::string mp = lower(a.get("mixed_precision").str());
  if (mp != "no" && mp != "fp16" && mp != "bf16" && mp != "fp8")
    throw std::invalid_argument("mixed_precision '" + mp + "': expected one of no, fp16, bf16, fp8");
  env["ACCELERATE_MIXED_PRECISION"] = mp;
  if (mp == "fp8")
    for (const auto& [k, v] : a.values)
      if (k.rfind("fp8_", 0) == 0 && !v.is_none()) env["ACCELERATE_" + upper(k)] = v.str();
}

// Beyond Accelerate, whose launcher passes --gradient_accumulation_steps on
// only to DeepSpeed (a flag accepted and then ignored): accel passes it in
// every mode, and the Accelerator uses it unless the code sets its own.
void add_accumulation_env(const LaunchArgs& a, std::map<std::string, std::string>& env) {
  if (!a.get("gradient_accumulation_steps").is_none())
    env["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = a.get("gradient_accumulation_steps").str();
}

void add_gpu_ids_env(const LaunchArgs& a, std::map<std::string, std::string>& env) {
  const Value ids = a.get("gpu_ids");
  if (!ids.is_none() && ids.str() != "all") env["CUDA_VISIBLE_DEVICES"] = ids.str();
}

void add_fsdp_env(const LaunchArgs& a, std::map<std::string, std::string>& env) {
  env["ACCELERATE_USE_FSDP"] = "true";
  if (a.get("fsdp_cpu_ram_efficient_loading").truthy() && !a.get("fsdp_sync_module_states").truthy())
    throw std::invalid_argument(
        "fsdp_cpu_ram_efficient_loading needs fsdp_sync_module_states: set --fsdp_sync_module_states true");
  auto s = [&](const char* k) { return a.get(k).str(); };
  auto l = [&](const char* k) { return lower(a.get(k).str()); };
  env["FSDP_VERSION"] = s("fsdp_version");
  env["FSDP_SHARDING_STRATEGY"] = s("fsdp_sharding_strategy");
  env["FSDP_RESHARD_AFTER_FORWARD"] = l("fsdp_reshard_after_forward");
  env["FSDP_OFFLOAD_PARAMS"] = l("fsdp_offload_params");
  env["FSDP_MIN_NUM_PARAMS"] = s("fsdp_min_num_params");
  auto optional = [&](const char* k, const char* var) {
    if (!a.get(k).is_none()) env[var] = a.get(k).str();
  };
  optional("fsdp_auto_wrap_policy", "FSDP_AUTO_WRAP_POLICY");
  optional("fsdp_transformer_layer_cls_to_wrap", "FSDP_TRANSFORMER_CLS_TO_WRAP");
  optional("fsdp_backward_prefetch", "FSDP_BACKWARD_PREFETCH");
  optional("fsdp_state_dict_type", "FSDP_STATE_DICT_TYPE");
  env["FSDP_FORWARD_PREFETCH"] = l("fsdp_forward_prefetch");
  env["FSDP_USE_ORIG_PARAMS"] = l("fsdp_use_orig_params");
  env["FSDP_CPU_RAM_EFFICIENT_LOADING"] = l("fsdp_cpu_ram_efficient_loading");
  env["FSDP_SYNC_MODULE_STATES"] = l("fsdp_sync_module_states");
  env["FSDP_ACTIVATION_CHECKPOINTING"] = l("fsdp_activation_checkpointing");
  env["FSDP_ACTIVATION_CHECKPOINTING_OFFLOAD"] = l("fsdp_activation_checkpointing_offload");
  optional("fsdp_ignored_modules", "FSDP_IGNORED_MODULES");
}

void add_deepspeed_env(const LaunchArgs& a, const std::string& ds_fields, const EnvLookup& parent,
                       std::map<std::string, std::string>& env) {
  // Accelerate puts the launch folder on PYTHONPATH for DeepSpeed's sake.
  std::string path;
  if (auto p = parent("PYTHONPATH")) {
    size_t start = 0;
    while (start <= p->size()) {
      size_t end = p->find(':', start);
      if (end == std::string::npos) end = p->size();
      if (end > start) path += (path.empty() ? "" : ":") + p->substr(start, end - start);
      start = end + 1;
    }
  }
  path += (path.empty() ? "" : ":") + std::filesystem::current_path().string();
  env["PYTHONPATH"] = path;
  env["ACCELERATE_CONFIG_DS_FIELDS"] = lower(ds_fields);
  env["ACCELERATE_USE_DEEPSPEED"] = "true";
  auto optional = [&](const char* k, const char* var, bool low) {
    if (!a.get(k).is_none()) env[var] = low ? lower(a.get(k).str()) : a.get(k).str();
  };
  optional("zero_stage", "ACCELERATE_DEEPSPEED_ZERO_STAGE", false);
  optional("gradient_accumulation_steps", "ACCELERATE_GRADIENT_ACCUMULATION_STEPS", false);
  optional("gradient_clipping", "ACCELERATE_GRADIENT_CLIPPING", true);
  optional("offload_optimizer_device", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", true);
  optional("offload_param_device", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", true);
  optional("zero3_init_flag", "ACCELERATE_DEEPSPEED_ZERO3_INIT", true);
  optional("zero3_save_16bit_model", "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL", true);
  optional("deepspeed_config_file", "ACCELERATE_DEEPSPEED_CONFIG_FILE", false);
  if (a.flag("enable_cpu_affinity")) env["ACCELERATE_CPU_AFFINITY"] = "1";
  optional("deepspeed_moe_layer_cls_names", "ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES", false);
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
  // ---- Accelerate's _validate_launch_command --------------------------
  int paradigms = a.flag("multi_gpu") + a.flag("cpu") + a.flag("tpu") + a.flag("use_deepspeed") + a.flag("use_fsdp");
  if (paradigms > 1)
    throw std::invalid_argument(
        "You can only use one of --cpu, --multi_gpu, --tpu, --use_deepspeed, --use_fsdp at a time.");
  if (a.flag("multi_gpu") && !a.get("num_processes").is_none() && a.get("num_processes").integer < 2)
    throw std::invalid_argument("--num_processes " + a.get("num_processes").str() +
                                ": --multi_gpu needs at least 2 processes");

  const std::string default_file = default_config_path();
  const bool use_config =
      !a.get("config_file").is_none() || (std::filesystem::is_regular_file(default_file) && !a.flag("cpu"));
  std::vector<std::string>& warned = plan.defaults_used;
  bool mp_from_config = false;
  std::string ds_fields;
  if (use_config) {
    const std::string path = a.get("config_file").is_none() ? default_file : a.get("config_file").str();
    ClusterConfig cfg = ClusterConfig::load(path);
    plan.config_file = path;
    apply_config(a, cfg);
    for (const auto& [k, _] : cfg.section("deepspeed_config")) ds_fields += (ds_fields.empty() ? "" : ",") + k;
    if (!a.given.count("mixed_precision")) {
      if (cfg.get("mixed_precision").is_none()) {
        a.set("mixed_precision", Value::of_text("no"));
      } else {
        a.set("mixed_precision", cfg.get("mixed_precision"));
        mp_from_config = true;
      }
    }
    if (a.get("dynamo_backend").is_none()) a.set("dynamo_backend", Value::of_text("no"));
    if (a.get("num_processes").str() == "-1")
      throw std::invalid_argument(path + " does not set num_processes: pass --num_processes");
  } else {
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
  if (a.get("num_machines").is_none()) a.set("num_machines", Value::of_int(1));
  if (a.get("machine_rank").is_none()) a.set("machine_rank", Value::of_int(0));
  // Every count is checked against its range (and the int it is kept in)
  // before anything divides by it or starts that many processes.
  plan.num_processes = int_in(a, "num_processes", 1, kMaxInt);
  plan.num_machines = int_in(a, "num_machines", 1, kMaxInt);
  plan.machine_rank = int_in(a, "machine_rank", 0, plan.num_machines - 1);
  const bool use_cpu = a.flag("cpu") || a.flag("use_cpu");
  if (!a.get("num_cpu_threads_per_process").is_none()) int_in(a, "num_cpu_threads_per_process", 1, kMaxInt);
  if (a.get("num_cpu_threads_per_process").is_none()) {
    a.set("num_cpu_threads_per_process", Value::of_int(int_from_env(env, {"OMP_NUM_THREADS"}, 1)));
    if (a.flag("use_cpu") && int_from_env(env, {"OMP_NUM_THREADS"}, 0) == 0) {
      long local_size =
          int_from_env(env, {"MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE"},
                       std::max(plan.num_processes / plan.num_machines, 1), 1);
      long threads = host.physical_cores / local_size;
      if (threads > 1) {
        a.set("num_cpu_threads_per_process", Value::of_int(threads));
        warned.push_back("\t`--num_cpu_threads_per_process` was set to `" + std::to_string(threads) +
                         "` to improve out-of-box performance when training on CPUs");
      }
    }
  }

  // ---- which launcher (launch_command) ---------------------------------
  const bool cpu_flag = a.flag("cpu");
  if (a.flag("tpu") && !cpu_flag)
    throw std::invalid_argument("distributed_type XLA / --tpu: TPUs are not supported by accel");
  if (a.flag("use_megatron_lm") && !cpu_flag)
    throw std::invalid_argument(
        "distributed_type MEGATRON_LM / --use_megatron_lm: Megatron-LM is not supported by accel");
  if (a.flag("module")) throw std::invalid_argument("--module: accel launches programs, not Python modules");
  if (!a.get("mpirun_hostfile").is_none())
    throw std::invalid_argument(
        "mpirun_hostfile: accel does not launch through mpirun; start `accel launch` on each "
        "machine with --machine_rank instead");
  if (a.flag("use_deepspeed") && !cpu_flag)
    plan.kind = LauncherKind::deepspeed;
  else if ((a.flag("use_fsdp") || a.flag("multi_gpu")) && !cpu_flag)
    plan.kind = LauncherKind::multi_gpu;
  else
    plan.kind = LauncherKind::simple;

  if (plan.num_processes % plan.num_machines != 0)
    throw std::invalid_argument("num_processes " + std::to_string(plan.num_processes) +
                                " is not a multiple of num_machines " + std::to_string(plan.num_machines) +
                                ": each machine starts num_processes / num_machines");
  plan.local_processes = plan.num_processes / plan.num_machines;
  if (plan.local_processes > std::max(host.physical_cores, 1) * kMaxWorkersPerCore)
    throw std::invalid_argument("num_processes " + std::to_string(plan.num_processes) + ": " +
                                std::to_string(plan.local_processes) + " workers on this machine, which has " +
                                std::to_string(host.physical_cores) + " CPU core(s); expected at most " +
                                std::to_string(std::max(host.physical_cores, 1) * kMaxWorkersPerCore) +
                                " (each worker is a whole program)");
  if (plan.local_processes > host.physical_cores)
    plan.notes.push_back("starting " + std::to_string(plan.local_processes) + " workers on " +
                         std::to_string(host.physical_cores) +
                         " CPU core(s): they will share the cores (pass --num_processes to start fewer)");
  plan.per_rank_env = plan.kind != LauncherKind::simple || plan.num_processes > 1 || plan.num_machines > 1;
  if (plan.num_machines > 1 && a.get("main_process_ip").is_none())
    throw std::invalid_argument("num_machines " + std::to_string(plan.num_machines) +
                                ": pass --main_process_ip (the address of the machine of rank 0)");
  if (plan.num_machines > 1 && a.get("main_process_port").is_none() && plan.kind == LauncherKind::simple)
    throw std::invalid_argument("num_machines " + std::to_string(plan.num_machines) + ": pass --main_process_port");
  plan.master_addr = a.get("main_process_ip").is_none() ? "127.0.0.1" : a.get("main_process_ip").str();
  plan.master_port = a.get("main_process_port").is_none() ? 29500 : int_in(a, "main_process_port", 0, 65535);
  if (plan.per_rank_env) {
    if (plan.master_port == 0) {
      if (plan.num_machines > 1)
        throw std::invalid_argument("main_process_port 0 (a free port) only works on one machine");
      plan.master_port = find_free_port(plan.master_addr);
    } else if ((plan.num_machines <= 1 || plan.machine_rank == 0) && port_in_use(plan.master_port)) {
      if (plan.num_machines > 1)
        throw std::invalid_argument("main_process_port " + std::to_string(plan.master_port) +
                                    " is already in use on this machine: pick another one");
      int port = find_free_port(plan.master_addr);
      plan.notes.push_back("Port " + std::to_string(plan.master_port) + " is already in use; using free port " +
                           std::to_string(port) + " instead (pass --main_process_port to choose).");
      plan.master_port = port;
    }
  }

  // ---- the environment (prepare_*_env) ---------------------------------
  auto& e = plan.env;
  const Value steps = a.get("gradient_accumulation_steps");
  if (!steps.is_none() && steps.integer < 1)
    throw std::invalid_argument("gradient_accumulation_steps " + steps.str() + ": expected >= 1");
  if (a.flag("debug")) e["ACCELERATE_DEBUG_MODE"] = "true";
  add_gpu_ids_env(a, e);
  if (plan.kind == LauncherKind::simple) {
    e["ACCELERATE_USE_CPU"] = Value::of_bool(use_cpu).str();
    if (plan.per_rank_env) {
      e["MASTER_ADDR"] = plan.master_addr;
      e["MASTER_PORT"] = std::to_string(plan.master_port);
    }
    if (use_cpu) {
      e["KMP_AFFINITY"] = "granularity=fine,compact,1,0";
      e["KMP_BLOCKTIME"] = "1";
    }
    add_precision_env(a, e);
    add_dynamo_env(a, e);
    e["OMP_NUM_THREADS"] = a.get("num_cpu_threads_per_process").str();
    if (a.flag("enable_cpu_affinity")) e["ACCELERATE_CPU_AFFINITY"] = "1";
    add_accumulation_env(a, e);
  } else if (plan.kind == LauncherKind::multi_gpu) {
    add_precision_env(a, e);
    add_dynamo_env(a, e);
    if (a.flag("use_fsdp")) add_fsdp_env(a, e);
    e["OMP_NUM_THREADS"] = a.get("num_cpu_threads_per_process").str();
    if (a.flag("enable_cpu_affinity")) e["ACCELERATE_CPU_AFFINITY"] = "1";
    add_accumulation_env(a, e);
  } else {
    if (mp_from_config) ds_fields += std::string(ds_fields.empty() ? "" : ",") + "mixed_precision";
    add_precision_env(a, e);
    add_deepspeed_env(a, ds_fields, env, e);
    // torchrun's own default when the launcher did not set it.
    if (!env("OMP_NUM_THREADS") && plan.local_processes > 1) e["OMP_NUM_THREADS"] = "1";
  }
  if (plan.per_rank_env) {
    e["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = env("TORCH_NCCL_ASYNC_ERROR_HANDLING").value_or("1");
  }

  plan.role = a.get("role").str();
  plan.max_restarts = int_in(a, "max_restarts", 0, kMaxInt);
  plan.tee = static_cast<int>(parse_integer_in(a.get("tee").str(), "--tee", 0, 3));
  if (!a.get("log_dir").is_none()) plan.log_dir = a.get("log_dir").str();
  plan.grace_period_s = seconds_in(a, "grace_period", 0);
  plan.monitor_interval_s = seconds_in(a, "monitor_interval", 0.001);
  plan.program = a.program;
  plan.program_args = a.program_args;
  if (plan.program.empty()) throw std::invalid_argument("no program to launch: accel launch [flags] PROGRAM [ARGS...]");
  return plan;
}

std::map<std::string, std::string> worker_env(const LaunchPlan& plan, int local_rank, int restart_count) {
  auto env = plan.env;
  if (!plan.per_rank_env) return env;
  const int rank = plan.machine_rank * plan.local_processes + local_rank;
  env["RANK"] = std::to_string(rank);
  env["LOCAL_RANK"] = std::to_string(local_rank);
  env["GROUP_RANK"] = std::to_string(plan.machine_rank);
  env["ROLE_RANK"] = std::to_string(rank);
  env["ROLE_NAME"] = plan.role;
  env["LOCAL_WORLD_SIZE"] = std::to_string(plan.local_processes);
  env["WORLD_SIZE"] = std::to_string(plan.num_processes);
  env["GROUP_WORLD_SIZE"] = std::to_string(plan.num_machines);
  env["ROLE_WORLD_SIZE"] = std::to_string(plan.num_processes);
  env["MASTER_ADDR"] = plan.master_addr;
  env["MASTER_PORT"] = std::to_string(plan.master_port);
  env["TORCHELASTIC_RESTART_COUNT"] = std::to_string(restart_count);
  env["TORCHELASTIC_MAX_RESTARTS"] = std::to_string(plan.max_restarts);
  env["TORCHELASTIC_RUN_ID"] = "none";
  // Rank 0 hosts the rendezvous store, not the launcher (torchrun's agent does).
  env["TORCHELASTIC_USE_AGENT_STORE"] = "False";
  env["TORCHELASTIC_SIGNALS_TO_HANDLE"] = "SIGTERM,SIGINT,SIGHUP,SIGQUIT";
  return env;
}

}  // namespace accel::launch
