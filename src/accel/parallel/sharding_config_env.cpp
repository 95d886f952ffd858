// ShardingConfig from the variables `accel launch` / `accelerate launch` set:
// ACCELERATE_USE_DEEPSPEED (with a config file, or the ACCELERATE_DEEPSPEED_*
// settings Accelerate builds a config from) or ACCELERATE_USE_FSDP (FSDP_*).
#include "accel/parallel/sharding_config.h"

#include <algorithm>
#include <cctype>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "accel/util/check.h"
#include "accel/util/checked_number.h"
#include "accel/util/strings.h"

namespace accel {
namespace {

using json = nlohmann::json;

bool env_true(const EnvLookup& env, const std::string& name) { return env_bool(env, name).value_or(false); }

// Accelerate's FullyShardedDataParallelPlugin.set_auto_wrap_policy: NO_WRAP
// unless FSDP_AUTO_WRAP_POLICY says otherwise; SIZE_BASED_WRAP without a
// positive FSDP_MIN_NUM_PARAMS wraps nothing.
void wrap_policy_from_env(const EnvLookup& env, ShardingOptions& o) {
  const std::string raw = env_string(env, "FSDP_AUTO_WRAP_POLICY").value_or("NO_WRAP");
  WrapPolicy policy;
  try {
    policy = parse_wrap_policy(raw);
  } catch (const std::invalid_argument&) {
    fail<std::invalid_argument>("FSDP_AUTO_WRAP_POLICY=", raw,
                                ": expected TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP or NO_WRAP");
  }
  if (policy == WrapPolicy::transformer_based) {
    std::vector<std::string> names;
    std::stringstream list(env_string(env, "FSDP_TRANSFORMER_CLS_TO_WRAP").value_or(""));
    for (std::string name; std::getline(list, name, ',');)
      if (!trim(name).empty()) names.push_back(trim(name));
    o.transformer_cls_to_wrap(names);
  }
  if (policy == WrapPolicy::size_based) {
    const long min = env_int(env, "FSDP_MIN_NUM_PARAMS").value_or(0);
    ACCEL_CHECK_ARG(min >= 0, "FSDP_MIN_NUM_PARAMS=", min, ": expected a number of parameters >= 0");
    if (min == 0)
      policy = WrapPolicy::no_wrap;
    else
      o.min_num_params(min);
  }
  o.auto_wrap_policy(policy);
}

// Accelerate's FullyShardedDataParallelPlugin.set_state_dict_type: by name
// (any case) or by torch's StateDictType value (1-3); FULL_STATE_DICT by
// default under fsdp_version 1, SHARDED_STATE_DICT under 2, which refuses
// LOCAL_STATE_DICT. Under version 1, LOCAL_STATE_DICT (each rank's flat
// shard, read back by as many ranks) is written as SHARDED_STATE_DICT,
// which holds the same and loads on any number of ranks.
StateDictType state_dict_type_from_env(const EnvLookup& env, long version) {
  const std::string variable = "FSDP_STATE_DICT_TYPE";
  const std::string raw = env_string(env, variable).value_or(version == 1 ? "FULL_STATE_DICT" : "SHARDED_STATE_DICT");
  static const std::vector<std::string> names = {"FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"};
  std::string name = upper(trim(raw));
  if (name == "1" || name == "2" || name == "3") name = names[name[0] - '1'];
  ACCEL_CHECK_ARG(std::find(names.begin(), names.end(), name) != names.end(), variable, "=", raw,
                  ": expected FULL_STATE_DICT, LOCAL_STATE_DICT or SHARDED_STATE_DICT (or 1-3)");
  ACCEL_CHECK_ARG(
      !(version == 2 && name == "LOCAL_STATE_DICT"), variable, "=", raw,
      " with FSDP_VERSION=2: FSDP2 has no LOCAL_STATE_DICT; expected FULL_STATE_DICT or SHARDED_STATE_DICT");
  return name == "FULL_STATE_DICT" ? StateDictType::full : StateDictType::sharded;
}

// Accelerate's plugin: FSDP_BACKWARD_PREFETCH (a name or torch's value;
// none when unset) and FSDP_FORWARD_PREFETCH are read under version 1.
// Under 2 it drops backward_prefetch (FSDP2 always prefetches the next
// unit of backward, which accel then does) and refuses forward_prefetch.
// FSDP_USE_ORIG_PARAMS, FSDP_SYNC_MODULE_STATES and
// FSDP_CPU_RAM_EFFICIENT_LOADING are checked as booleans: accel always keeps
// the original parameters and broadcasts the main process's weights at
// prepare; the last one is read by transformers' from_pretrained, not by
// the Accelerator, here as in Accelerate.
void prefetch_from_env(const EnvLookup& env, long version, ShardingOptions& o) {
  for (const char* flag : {"FSDP_USE_ORIG_PARAMS", "FSDP_SYNC_MODULE_STATES", "FSDP_CPU_RAM_EFFICIENT_LOADING"})
    env_bool(env, flag);
  const bool forward = env_true(env, "FSDP_FORWARD_PREFETCH");
  if (version == 2) {
    ACCEL_CHECK_ARG(!forward, "FSDP_FORWARD_PREFETCH=", *env_string(env, "FSDP_FORWARD_PREFETCH"),
                    " with FSDP_VERSION=2: Accelerate refuses forward_prefetch under FSDP2; expected false, or "
                    "FSDP_VERSION=1");
    o.backward_prefetch(BackwardPrefetch::backward_pre);
    return;
  }
  o.forward_prefetch(forward);
  if (auto raw = env_string(env, "FSDP_BACKWARD_PREFETCH")) {
    try {
      o.backward_prefetch(parse_backward_prefetch(trim(*raw)));
    } catch (const std::invalid_argument&) {
      fail<std::invalid_argument>("FSDP_BACKWARD_PREFETCH=", *raw,
                                  ": expected BACKWARD_PRE, BACKWARD_POST or NO_PREFETCH (or 1-2)");
    }
  }
}

ShardingConfig fsdp_from_env(const EnvLookup& env) {
  ShardingConfig out;
  out.source = "environment";
  const long version = env_int(env, "FSDP_VERSION").value_or(1);
  ACCEL_CHECK_ARG(version == 1 || version == 2, "FSDP_VERSION=", version, ": expected 1 or 2");
  static const std::vector<std::string> names = {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD",
                                                 "HYBRID_SHARD_ZERO2"};
  std::string name, what;  // the strategy, and the variable setting that chose it (for messages)
  if (version == 1) {
    const std::string variable = "FSDP_SHARDING_STRATEGY";
    const std::string raw = env_string(env, variable).value_or("FULL_SHARD");
    const std::string expected =
        ": expected one of FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2 (or 1-5)";
    name = upper(raw);
    const bool number =
        !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
    if (number) {  // Accelerate's FSDP_SHARDING_STRATEGY may be the enum's value, 1-5
      const long n = parse_int(name, variable);
      ACCEL_CHECK_ARG(n >= 1 && n <= 5, variable, "=", raw, expected);
      name = names[n - 1];
    }
    ACCEL_CHECK_ARG(std::find(names.begin(), names.end(), name) != names.end(), variable, "=", raw, expected);
    what = variable + "=" + raw + (raw == name ? "" : " (" + name + ")");
  } else {
    const std::string variable = "FSDP_RESHARD_AFTER_FORWARD";
    const bool reshard = env_bool(env, variable).value_or(true);
    name = reshard ? "FULL_SHARD" : "SHARD_GRAD_OP";
    what = "FSDP_VERSION=2 with " + variable + "=" + (reshard ? "true (FULL_SHARD)" : "false (SHARD_GRAD_OP)");
  }
  const bool offload = env_true(env, "FSDP_OFFLOAD_PARAMS");
  ShardingOptions o;
  o.state_dict_type(state_dict_type_from_env(env, version));
  if (name == "FULL_SHARD" || name.rfind("HYBRID", 0) == 0) {
    // HYBRID_SHARD_ZERO2 keeps the parameters gathered from forward to backward.
    o.strategy(name == "FULL_SHARD" ? ShardingStrategy::full_shard : ShardingStrategy::hybrid_shard);
    o.reshard_after_forward(name != "HYBRID_SHARD_ZERO2");
    wrap_policy_from_env(env, o);
    o.activation_checkpointing(env_true(env, "FSDP_ACTIVATION_CHECKPOINTING"));
    // FSDP's CPU offload: parameters, gradients and optimizer state in host memory.
    if (offload)
      o.offload_param(OffloadOptions().device(OffloadDevice::cpu))
          .offload_optimizer(OffloadOptions().device(OffloadDevice::cpu));
  } else {
    // Activation checkpointing acts at the units the wrap policy picks, as
    // Accelerate applies it with the plugin's auto_wrap_policy whatever the strategy.
    wrap_policy_from_env(env, o);
    o.activation_checkpointing(env_true(env, "FSDP_ACTIVATION_CHECKPOINTING"));
    o.strategy(name == "NO_SHARD" ? ShardingStrategy::no_shard : ShardingStrategy::shard_grad_op);
    if (offload) o.offload_optimizer(OffloadOptions().device(OffloadDevice::cpu));
  }
  prefetch_from_env(env, version, o);
  out.sharding = o;
  return out;
}

// Accelerate's DeepSpeedPlugin without a config file: the config it builds
// from the variables, as JSON, then read like a file.
json deepspeed_json_from_env(const EnvLookup& env) {
  json j;
  j["train_batch_size"] = "auto";
  j["train_micro_batch_size_per_gpu"] = "auto";
  j["gradient_accumulation_steps"] = "auto";
  json zero;
  const std::string stage_var = "ACCELERATE_DEEPSPEED_ZERO_STAGE";
  const long stage = env_int(env, stage_var).value_or(2);
  ACCEL_CHECK_ARG(stage >= 0 && stage <= 3, stage_var, "=", stage, ": expected 0, 1, 2 or 3");
  zero["stage"] = stage;
  const std::string dev_var = "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE";
  const std::string device = lower(env_string(env, dev_var).value_or("none"));
  ACCEL_CHECK_ARG(device == "none" || device == "cpu" || device == "nvme", dev_var, "=", device,
                  ": expected none, cpu or nvme");
  zero["offload_optimizer"]["device"] = device;
  if (device == "nvme") {
    const std::string path_var = "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_NVME_PATH";
    const auto path = env_string(env, path_var);
    ACCEL_CHECK_ARG(path && *path != "none", dev_var, "=nvme needs ", path_var,
                    " (the folder for the optimizer state pages)");
    zero["offload_optimizer"]["nvme_path"] = *path;
  }
  const std::string param_var = "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE";
  const std::string param_device = lower(env_string(env, param_var).value_or("none"));
  ACCEL_CHECK_ARG(param_device == "none" || param_device == "cpu" || param_device == "nvme", param_var, "=",
                  param_device, ": expected none, cpu or nvme");
  if (param_device != "none") zero["offload_param"]["device"] = param_device;
  if (param_device == "nvme") {
    const std::string path_var = "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_NVME_PATH";
    const auto path = env_string(env, path_var);
    ACCEL_CHECK_ARG(path && *path != "none", param_var, "=nvme needs ", path_var,
                    " (the folder for the parameter files)");
    zero["offload_param"]["nvme_path"] = *path;
  }
  j["zero_optimization"] = zero;
  if (auto clip = env_string(env, "ACCELERATE_GRADIENT_CLIPPING"); clip && *clip != "auto")
    j["gradient_clipping"] = "auto";
  return j;
}

// Accelerate's _deepspeed_config_checks: with a config file, the accelerate
// config (its deepspeed_config keys, which the launcher lists in
// ACCELERATE_CONFIG_DS_FIELDS) must leave these keys to the file.
void check_fields_left_to_the_file(const EnvLookup& env, const std::string& file) {
  static const std::vector<std::string> ignored = {
      "gradient_accumulation_steps", "gradient_clipping",      "zero_stage",
      "offload_optimizer_device",    "offload_param_device",   "offload_param_nvme_path",
      "offload_optimizer_nvme_path", "zero3_save_16bit_model", "mixed_precision"};
  std::stringstream fields(env_string(env, "ACCELERATE_CONFIG_DS_FIELDS").value_or(""));
  for (std::string f; std::getline(fields, f, ',');)
    ACCEL_CHECK_ARG(std::find(ignored.begin(), ignored.end(), f) == ignored.end(),
                    "the accelerate config sets deepspeed_config.", f, " and also deepspeed_config_file ", file,
                    ": with a DeepSpeed config file, give gradient_accumulation_steps, gradient_clipping, zero_stage, "
                    "offload_*_device, offload_*_nvme_path, zero3_save_16bit_model and mixed_precision in that file "
                    "only");
}

}  // namespace

ShardingConfig sharding_config_from_env(const EnvLookup& env, const ShardingConfigContext& context) {
  const bool deepspeed = env_true(env, "ACCELERATE_USE_DEEPSPEED");
  const bool fsdp = env_true(env, "ACCELERATE_USE_FSDP");
  ACCEL_CHECK_ARG(!(deepspeed && fsdp), "ACCELERATE_USE_DEEPSPEED and ACCELERATE_USE_FSDP are both true; choose one");
  if (fsdp) return fsdp_from_env(env);
  if (!deepspeed) return {};

  ShardingConfigContext ctx = context;
  if (!ctx.gradient_clipping)
    if (auto clip = env_string(env, "ACCELERATE_GRADIENT_CLIPPING"); clip && *clip != "auto")
      ctx.gradient_clipping = parse_number(*clip, "environment variable ACCELERATE_GRADIENT_CLIPPING");
  if (!ctx.gradient_accumulation_steps)
    if (auto gas = env_int(env, "ACCELERATE_GRADIENT_ACCUMULATION_STEPS")) ctx.gradient_accumulation_steps = *gas;

  const auto file = env_string(env, "ACCELERATE_DEEPSPEED_CONFIG_FILE");
  if (file && *file != "none") {
    check_fields_left_to_the_file(env, *file);
    return load_deepspeed_config(*file, ctx);
  }
  return parse_deepspeed_config(deepspeed_json_from_env(env).dump(), "environment", ctx);
}

}  // namespace accel
