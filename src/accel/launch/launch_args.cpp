#include "accel/launch/launch_args.h"

#include <algorithm>
#include <stdexcept>

#include "accel/util/check.h"
#include "accel/util/checked_number.h"
#include "accel/util/excerpt.h"
#include "accel/util/strings.h"

namespace accel::launch {
namespace {

using K = FlagSpec::Kind;
Value none() { return {}; }
Value T(const char* s) { return Value::of_text(s); }

}  // namespace

const std::vector<FlagSpec>& launch_flags() {
  static const std::vector<FlagSpec> flags = {
      {"config_file", K::text, none(), {}, "The config file to use for the default values"},
      {"quiet", K::store_true, Value::of_bool(false), {}, "Accepted for compatibility"},
      // Hardware selection
      {"cpu",
       K::store_true,
       Value::of_bool(false),
       {},
       "Run on the CPU (with --num_processes N: N CPU workers over Gloo)"},
      {"multi_gpu", K::store_true, Value::of_bool(false), {}, "Launch a distributed GPU training"},
      {"tpu", K::store_true, Value::of_bool(false), {}, "Not supported by accel"},
      // Resource selection
      {"mixed_precision", K::text, none(), {"no", "fp16", "bf16", "fp8"}, "Mixed precision mode"},
      {"num_processes", K::integer, none(), {}, "Total number of processes to launch"},
      {"num_machines", K::integer, none(), {}, "Total number of machines"},
      {"num_cpu_threads_per_process", K::integer, none(), {}, "CPU threads per process (OMP_NUM_THREADS)"},
      {"enable_cpu_affinity", K::store_true, Value::of_bool(false), {}, "Enable CPU affinity"},
      {"dynamo_backend",
       K::text,
       none(),
       {"no", "eager", "aot_eager", "inductor", "aot_ts_nvfuser", "nvprims_nvfuser", "cudagraphs", "ofi", "fx2trt",
        "onnxrt", "tensorrt", "aot_torchxla_trace_once", "torchxla_trace_once", "tvm", "hpu_backend", "neuron"},
       "Dynamo backend (passed on in ACCELERATE_DYNAMO_BACKEND)"},
      {"dynamo_mode", K::text, T("default"), {"default", "reduce-overhead", "max-autotune"}, "Dynamo mode"},
      {"dynamo_use_fullgraph", K::store_true, Value::of_bool(false), {}, "Dynamo full graph"},
      {"dynamo_use_dynamic", K::store_true, Value::of_bool(false), {}, "Dynamo dynamic shapes"},
      {"dynamo_use_regional_compilation", K::store_true, Value::of_bool(false), {}, "Dynamo regional compilation"},
      // Training paradigm
      {"use_deepspeed", K::store_true, Value::of_bool(false), {}, "Use DeepSpeed-style ZeRO (accel's own)"},
      {"use_fsdp", K::store_true, Value::of_bool(false), {}, "Use FSDP"},
      {"use_megatron_lm", K::store_true, Value::of_bool(false), {}, "Not supported by accel"},
      // Distributed
      {"gpu_ids", K::text, none(), {}, "GPUs (by id) to use on this machine, comma-separated"},
      {"same_network", K::store_true, Value::of_bool(false), {}, "All machines are on the same local network"},
      {"machine_rank", K::integer, none(), {}, "Rank of this machine"},
      {"main_process_ip", K::text, none(), {}, "IP address of the machine of rank 0"},
      {"main_process_port", K::integer, none(), {}, "Port on the machine of rank 0 (0: a free one)"},
      {"tee",
       K::text,
       T("0"),
       {"0", "1", "2", "3"},
       "Prefix console lines with the rank and tee them into --log_dir: 1 stdout, 2 stderr, 3 both"},
      {"log_dir", K::text, none(), {}, "Write each rank's stdout and stderr to files in this folder"},
      {"role", K::text, T("default"), {}, "User-defined role for the workers (ROLE_NAME)"},
      {"rdzv_backend", K::text, T("static"), {}, "Rendezvous backend (accel: static)"},
      {"rdzv_conf", K::text, T(""), {}, "Additional rendezvous configuration (k1=v1,k2=v2)"},
      {"max_restarts", K::integer, Value::of_int(0), {}, "Restart the local worker group up to N times on failure"},
      {"monitor_interval", K::number, Value::of_number(0.1), {}, "Seconds between checks of the workers"},
      {"module", K::store_true, Value::of_bool(false), {}, "Not supported by accel (no Python)"},
      {"no_python",
       K::store_true,
       Value::of_bool(false),
       {},
       "Accepted for compatibility: accel always runs the program directly"},
      {"main_training_function", K::text, none(), {}, "Accepted for compatibility (TPU only)"},
      {"downcast_bf16", K::store_true, Value::of_bool(false), {}, "Accepted for compatibility (TPU only)"},
      // DeepSpeed
      {"deepspeed_config_file", K::text, none(), {}, "DeepSpeed JSON config file"},
      {"zero_stage", K::integer, none(), {"0", "1", "2", "3"}, "ZeRO stage"},
      {"offload_optimizer_device", K::text, none(), {"none", "cpu", "nvme"}, "Where to offload optimizer states"},
      {"offload_param_device", K::text, none(), {"none", "cpu", "nvme"}, "Where to offload parameters"},
      {"offload_optimizer_nvme_path", K::text, none(), {}, "NVMe path for optimizer states"},
      {"offload_param_nvme_path", K::text, none(), {}, "NVMe path for parameters"},
      {"gradient_accumulation_steps",
       K::integer,
       none(),
       {},
       "Gradient accumulation steps (passed on in every mode; Accelerate: DeepSpeed only)"},
      {"gradient_clipping", K::number, none(), {}, "Gradient clipping value"},
      {"zero3_init_flag", K::text, none(), {}, "Construct ZeRO-3 models sharded (true|false)"},
      {"zero3_save_16bit_model", K::text, none(), {}, "Save 16-bit weights with ZeRO-3 (true|false)"},
      {"deepspeed_hostfile", K::text, none(), {}, "Accepted for compatibility"},
      {"deepspeed_exclusion_filter", K::text, none(), {}, "Accepted for compatibility"},
      {"deepspeed_inclusion_filter", K::text, none(), {}, "Accepted for compatibility"},
      {"deepspeed_multinode_launcher", K::text, none(), {}, "Accepted for compatibility"},
      {"deepspeed_moe_layer_cls_names", K::text, none(), {}, "MoE layer class names"},
      // FSDP
      {"fsdp_version", K::text, T("1"), {"1", "2"}, "FSDP version"},
      {"fsdp_offload_params", K::text, T("false"), {}, "Offload parameters and gradients to CPU (true|false)"},
      {"fsdp_min_num_params", K::integer, Value::of_int(100000000), {}, "Minimum parameters for size-based wrapping"},
      {"fsdp_sharding_strategy", K::text, T("FULL_SHARD"), {}, "Sharding strategy (FSDP1)"},
      {"fsdp_reshard_after_forward",
       K::text,
       T("true"),
       {},
       "Reshard after forward (bool for FSDP2, strategy for FSDP1)"},
      {"fsdp_auto_wrap_policy", K::text, none(), {}, "Auto wrap policy"},
      {"fsdp_transformer_layer_cls_to_wrap", K::text, none(), {}, "Layer class names to wrap"},
      {"fsdp_backward_prefetch", K::text, none(), {}, "Backward prefetch policy"},
      {"fsdp_state_dict_type", K::text, none(), {}, "State dict type"},
      {"fsdp_forward_prefetch", K::text, T("false"), {}, "Forward prefetch (true|false)"},
      {"fsdp_use_orig_params", K::text, T("true"), {}, "Use original parameters (true|false)"},
      {"fsdp_cpu_ram_efficient_loading", K::text, T("true"), {}, "Only rank 0 loads the checkpoint (true|false)"},
      {"fsdp_sync_module_states", K::text, T("true"), {}, "Broadcast module states from rank 0 (true|false)"},
      {"fsdp_activation_checkpointing", K::text, T("false"), {}, "Activation checkpointing (true|false)"},
      {"fsdp_activation_checkpointing_offload",
       K::text,
       T("false"),
       {},
       "Offload checkpointed activations (true|false)"},
      // ParallelismConfig (read by accel::ParallelismConfig::from_env in the workers)
      {"use_parallelism_config", K::store_true, Value::of_bool(false), {}, "Use the N-d parallelism config"},
      {"parallelism_config_dp_replicate_size", K::integer, Value::of_int(1), {}, "Replicated data-parallel size"},
      {"parallelism_config_dp_shard_size", K::integer, Value::of_int(1), {}, "Sharded data-parallel size"},
      {"parallelism_config_tp_size", K::integer, Value::of_int(1), {}, "Tensor-parallel size"},
      {"parallelism_config_cp_size", K::integer, Value::of_int(1), {}, "Context-parallel size"},
      {"parallelism_config_cp_backend", K::text, T("torch"), {"torch"}, "Context-parallel backend"},
      {"parallelism_config_cp_comm_strategy", K::text, T("allgather"), {}, "Context-parallel communication"},
      {"parallelism_config_sp_size", K::integer, Value::of_int(1), {}, "Sequence-parallel size"},
      {"parallelism_config_sp_backend", K::text, T("deepspeed"), {"deepspeed"}, "Sequence-parallel backend"},
      {"parallelism_config_sp_seq_length", K::text, none(), {}, "Sequence-parallel sequence length"},
      {"parallelism_config_sp_seq_length_is_variable", K::text, T("True"), {}, "Variable sequence lengths"},
      {"parallelism_config_sp_attn_implementation", K::text, T("sdpa"), {}, "Sequence-parallel attention"},
      // Debugging
      {"debug", K::store_true, Value::of_bool(false), {}, "Check distributed operations (ACCELERATE_DEBUG_MODE)"},
      {"mpirun_hostfile", K::text, none(), {}, "Not supported by accel"},
      // accel's own
      {"grace_period",
       K::number,
       Value::of_number(5.0),
       {},
       "Seconds between SIGTERM and SIGKILL when stopping workers",
       true},
  };
  return flags;
}

LaunchArgs LaunchArgs::defaults() {
  LaunchArgs a;
  for (const auto& f : launch_flags()) a.values[f.name] = f.fallback;
  return a;
}

void LaunchArgs::set_flag(const std::string& name, const std::string& text) {
  auto it =
      std::find_if(launch_flags().begin(), launch_flags().end(), [&](const FlagSpec& f) { return f.name == name; });
  ACCEL_CHECK_ARG(it != launch_flags().end(), "unknown flag --", excerpt(name));
  const FlagSpec& f = *it;
  const std::string what = "--" + name;
  Value v;
  switch (f.kind) {
    case K::store_true: v = Value::of_bool(true); break;
    // Ranges are checked where the values are used (plan_launch), the same
    // for a flag and for a config key.
    case K::integer: v = Value::of_int(parse_integer<long long>(text, what)); break;
    case K::number: v = Value::of_number(parse_number(text, what)); break;
    case K::text: v = Value::of_text(text); break;
  }
  ACCEL_CHECK_ARG(f.choices.empty() || std::find(f.choices.begin(), f.choices.end(), v.str()) != f.choices.end(), what,
                  ": expected one of ", join(f.choices), ", got '", excerpt(text), "'");
  values[name] = v;
  given.insert(name);
}

Value LaunchArgs::get(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? Value{} : it->second;
}

}  // namespace accel::launch
