// The workers' environment: Accelerate's prepare_simple_launcher_cmd_env,
// prepare_multi_gpu_env and prepare_deepspeed_cmd_launcher variables, then
// torchrun's per-rank ones (worker_env()).
#include "accel/launch/worker_env.h"

#include <filesystem>
#include <stdexcept>

#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel::launch {
namespace {

using Env = std::map<std::string, std::string>;

// What only the simple launcher sets (its workers start without torchrun).
void add_simple_launcher_env(const LaunchArgs& a, const LaunchPlan& plan, Env& env) {
  const bool use_cpu = a.flag("cpu") || a.flag("use_cpu");
  env["ACCELERATE_USE_CPU"] = Value::of_bool(use_cpu).str();
  if (plan.per_rank_env) {
    env["MASTER_ADDR"] = plan.master_addr;
    env["MASTER_PORT"] = std::to_string(plan.master_port);
  }
  if (use_cpu) {
    env["KMP_AFFINITY"] = "granularity=fine,compact,1,0";
    env["KMP_BLOCKTIME"] = "1";
  }
}

void add_dynamo_env(const LaunchArgs& a, Env& env) {
  env["ACCELERATE_DYNAMO_BACKEND"] = upper(a.get("dynamo_backend").str());
  env["ACCELERATE_DYNAMO_MODE"] = a.get("dynamo_mode").str();
  env["ACCELERATE_DYNAMO_USE_FULLGRAPH"] = a.get("dynamo_use_fullgraph").str();
  env["ACCELERATE_DYNAMO_USE_DYNAMIC"] = a.get("dynamo_use_dynamic").str();
  env["ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION"] = a.get("dynamo_use_regional_compilation").str();
}

void add_precision_env(const LaunchArgs& a, Env& env) {
  const std::string mp = lower(a.get("mixed_precision").str());
  ACCEL_CHECK_ARG(mp == "no" || mp == "fp16" || mp == "bf16" || mp == "fp8", "mixed_precision '", mp,
                  "': expected one of no, fp16, bf16, fp8");
  env["ACCELERATE_MIXED_PRECISION"] = mp;
  if (mp == "fp8")
    for (const auto& [k, v] : a.values)
      if (k.rfind("fp8_", 0) == 0 && !v.is_none()) env["ACCELERATE_" + upper(k)] = v.str();
}

// Beyond Accelerate, whose launcher passes --gradient_accumulation_steps on
// only to DeepSpeed (a flag accepted and then ignored): accel passes it in
// every mode, and the Accelerator uses it unless the code sets its own.
void add_accumulation_env(const LaunchArgs& a, Env& env) {
  if (!a.get("gradient_accumulation_steps").is_none())
    env["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = a.get("gradient_accumulation_steps").str();
}

void add_gpu_ids_env(const LaunchArgs& a, Env& env) {
  const Value ids = a.get("gpu_ids");
  if (!ids.is_none() && ids.str() != "all") env["CUDA_VISIBLE_DEVICES"] = ids.str();
}

void add_fsdp_env(const LaunchArgs& a, Env& env) {
  env["ACCELERATE_USE_FSDP"] = "true";
  ACCEL_CHECK_ARG(!a.get("fsdp_cpu_ram_efficient_loading").truthy() || a.get("fsdp_sync_module_states").truthy(),
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

// Accelerate's prepare_extend_env_parallelism_config.
void add_parallelism_env(const LaunchArgs& a, Env& env) {
  const std::string prefix = "PARALLELISM_CONFIG_";
  env["ACCELERATE_USE_PARALLELISM_CONFIG"] = "true";
  for (const char* key :
       {"dp_replicate_size", "dp_shard_size", "tp_size", "cp_size", "cp_backend", "sp_size", "sp_backend"})
    env[prefix + upper(key)] = a.get(std::string("parallelism_config_") + key).str();
  if (a.get("parallelism_config_cp_size").integer > 1)
    env[prefix + "CP_COMM_STRATEGY"] = a.get("parallelism_config_cp_comm_strategy").str();
  if (a.get("parallelism_config_sp_size").integer > 1)
    for (const char* key : {"sp_seq_length", "sp_seq_length_is_variable", "sp_attn_implementation"})
      env[prefix + upper(key)] = a.get(std::string("parallelism_config_") + key).str();
}

void add_deepspeed_env(const LaunchArgs& a, const std::vector<std::string>& ds_fields, const EnvLookup& parent,
                       Env& env) {
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
  env["ACCELERATE_CONFIG_DS_FIELDS"] = lower(join(ds_fields, ","));
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

void build_worker_env(const LaunchArgs& a, const std::vector<std::string>& ds_fields, const EnvLookup& parent,
                      LaunchPlan& plan) {
  auto& e = plan.env;
  const Value steps = a.get("gradient_accumulation_steps");
  ACCEL_CHECK_ARG(steps.is_none() || steps.integer >= 1, "gradient_accumulation_steps ", steps.str(),
                  ": expected >= 1");
  if (a.flag("debug")) e["ACCELERATE_DEBUG_MODE"] = "true";
  add_gpu_ids_env(a, e);
  if (plan.kind == LauncherKind::deepspeed) {
    add_precision_env(a, e);
    add_deepspeed_env(a, ds_fields, parent, e);
    // torchrun's own default when the launcher did not set it.
    if (!parent("OMP_NUM_THREADS") && plan.local_processes > 1) e["OMP_NUM_THREADS"] = "1";
  } else {
    if (plan.kind == LauncherKind::simple) add_simple_launcher_env(a, plan, e);
    add_precision_env(a, e);
    add_dynamo_env(a, e);
    if (plan.kind == LauncherKind::multi_gpu && a.flag("use_fsdp")) add_fsdp_env(a, e);
    if (plan.kind == LauncherKind::multi_gpu && a.flag("use_parallelism_config")) add_parallelism_env(a, e);
    e["OMP_NUM_THREADS"] = a.get("num_cpu_threads_per_process").str();
    if (a.flag("enable_cpu_affinity")) e["ACCELERATE_CPU_AFFINITY"] = "1";
    add_accumulation_env(a, e);
  }
  if (plan.per_rank_env) e["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = parent("TORCH_NCCL_ASYNC_ERROR_HANDLING").value_or("1");
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
