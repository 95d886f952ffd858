#include "accel/parallel/sharding_options.h"

#include <stdexcept>
#include <utility>

#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {

std::string to_string(ShardingStrategy strategy) {
  switch (strategy) {
    case ShardingStrategy::no_shard: return "no_shard";
    case ShardingStrategy::shard_optimizer: return "shard_optimizer";
    case ShardingStrategy::shard_grad_op: return "shard_grad_op";
    case ShardingStrategy::full_shard: return "full_shard";
    case ShardingStrategy::hybrid_shard: return "hybrid_shard";
  }
  return "?";
}

ShardingStrategy parse_sharding_strategy(const std::string& name) {
  for (auto s : {ShardingStrategy::no_shard, ShardingStrategy::shard_optimizer, ShardingStrategy::shard_grad_op,
                 ShardingStrategy::full_shard, ShardingStrategy::hybrid_shard})
    if (to_string(s) == name) return s;
  fail<std::invalid_argument>("unknown sharding strategy '", name,
                              "': expected 'no_shard', 'shard_optimizer', 'shard_grad_op', 'full_shard' or "
                              "'hybrid_shard'");
}

std::string to_string(WrapPolicy policy) {
  switch (policy) {
    case WrapPolicy::transformer_based: return "TRANSFORMER_BASED_WRAP";
    case WrapPolicy::size_based: return "SIZE_BASED_WRAP";
    case WrapPolicy::no_wrap: return "NO_WRAP";
  }
  return "?";
}

WrapPolicy parse_wrap_policy(const std::string& name) {
  for (auto p : {WrapPolicy::transformer_based, WrapPolicy::size_based, WrapPolicy::no_wrap})
    if (to_string(p) == upper(name)) return p;
  fail<std::invalid_argument>("unknown wrap policy '", name,
                              "': expected TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP or NO_WRAP");
}

std::string to_string(StateDictType type) {
  return type == StateDictType::sharded ? "SHARDED_STATE_DICT" : "FULL_STATE_DICT";
}

StateDictType parse_state_dict_type(const std::string& name) {
  for (auto t : {StateDictType::full, StateDictType::sharded})
    if (to_string(t) == upper(name)) return t;
  fail<std::invalid_argument>("unknown state dict type '", name, "': expected FULL_STATE_DICT or SHARDED_STATE_DICT");
}

std::string to_string(BackwardPrefetch prefetch) {
  switch (prefetch) {
    case BackwardPrefetch::backward_pre: return "BACKWARD_PRE";
    case BackwardPrefetch::backward_post: return "BACKWARD_POST";
    default: return "NO_PREFETCH";
  }
}

BackwardPrefetch parse_backward_prefetch(const std::string& name) {
  const std::string n = upper(name);
  if (n == "1") return BackwardPrefetch::backward_pre;
  if (n == "2") return BackwardPrefetch::backward_post;
  for (auto p : {BackwardPrefetch::none, BackwardPrefetch::backward_pre, BackwardPrefetch::backward_post})
    if (to_string(p) == n) return p;
  fail<std::invalid_argument>("unknown backward prefetch '", name,
                              "': expected BACKWARD_PRE, BACKWARD_POST or NO_PREFETCH (or 1-2)");
}

std::string to_string(OffloadDevice device) {
  switch (device) {
    case OffloadDevice::none: return "none";
    case OffloadDevice::cpu: return "cpu";
    case OffloadDevice::nvme: return "nvme";
  }
  return "?";
}

OffloadDevice parse_offload_device(const std::string& name) {
  for (auto d : {OffloadDevice::none, OffloadDevice::cpu, OffloadDevice::nvme})
    if (to_string(d) == name) return d;
  fail<std::invalid_argument>("unknown offload device '", name, "': expected 'none', 'cpu' or 'nvme'");
}

int64_t ReshardAfterForward::ranks(int64_t group_size) const {
  if (!is_size_) return size_ == 0 ? group_size : 1;
  ACCEL_CHECK_ARG(size_ >= 1 && size_ <= group_size && group_size % size_ == 0,
                  "ShardingOptions: reshard_after_forward is ", size_, ", an int must be a divisor of the ", group_size,
                  " ranks of the shard group (the ranks that keep each slice after forward)");
  return size_;
}

std::string ReshardAfterForward::str() const {
  if (is_size_) return std::to_string(size_);
  return size_ == 0 ? "true" : "false";
}

void check_sharding_options(const ShardingOptions& o) {
  const int strategy = static_cast<int>(o.strategy());
  ACCEL_CHECK_ARG(strategy >= 0 && strategy <= static_cast<int>(ShardingStrategy::hybrid_shard),
                  "ShardingOptions: strategy is ", strategy,
                  ", expected no_shard, shard_optimizer, shard_grad_op, full_shard or hybrid_shard");
  ACCEL_CHECK_ARG(o.hybrid_shard_size() >= 0, "ShardingOptions: hybrid_shard_size is ", o.hybrid_shard_size(),
                  ", expected >= 0 (0: the ranks of one node)");
  const int policy = static_cast<int>(o.auto_wrap_policy());
  ACCEL_CHECK_ARG(policy >= 0 && policy <= static_cast<int>(WrapPolicy::no_wrap),
                  "ShardingOptions: auto_wrap_policy is ", policy,
                  ", expected transformer_based, size_based or no_wrap");
  ACCEL_CHECK_ARG(!o.reshard_after_forward().is_size() || o.reshard_after_forward().size() >= 1,
                  "ShardingOptions: reshard_after_forward is ", o.reshard_after_forward().size(),
                  ", expected true, false or a number of ranks >= 1");
  ACCEL_CHECK_ARG(o.min_num_params() >= 1, "ShardingOptions: min_num_params is ", o.min_num_params(),
                  ", expected >= 1");
  ACCEL_CHECK_ARG(o.reduce_bucket_size() >= 1, "ShardingOptions: reduce_bucket_size is ", o.reduce_bucket_size(),
                  ", expected >= 1 (elements per gradient bucket)");
  const auto& off = o.offload_optimizer();
  const int device = static_cast<int>(off.device());
  ACCEL_CHECK_ARG(device >= 0 && device <= static_cast<int>(OffloadDevice::nvme),
                  "ShardingOptions: offload_optimizer.device is ", device, ", expected none, cpu or nvme");
  ACCEL_CHECK_ARG(off.io_threads() >= 1, "ShardingOptions: offload_optimizer.io_threads is ", off.io_threads(),
                  ", expected >= 1");
  ACCEL_CHECK_ARG(
      off.device() != OffloadDevice::nvme || !off.nvme_path().empty(),
      "ShardingOptions: offload_optimizer.device is nvme but nvme_path is empty; give the folder for the pages");
  ACCEL_CHECK_ARG(
      !off.delayed_update() || off.device() != OffloadDevice::none,
      "ShardingOptions: offload_optimizer.delayed_update is set but offload_optimizer.device is none; the delayed "
      "update is ZeRO-Offload's (device cpu or nvme)");
  const auto& param = o.offload_param();
  const int param_device = static_cast<int>(param.device());
  ACCEL_CHECK_ARG(param_device >= 0 && param_device <= static_cast<int>(OffloadDevice::nvme),
                  "ShardingOptions: offload_param.device is ", param_device, ", expected none, cpu or nvme");
  if (param.device() != OffloadDevice::none)
    ACCEL_CHECK_ARG(shards_parameters(o.strategy()), "ShardingOptions: offload_param.device is ",
                    to_string(param.device()), " with strategy ", to_string(o.strategy()),
                    "; parameter offload needs full_shard or hybrid_shard");
  ACCEL_CHECK_ARG(param.device() != OffloadDevice::nvme || !param.nvme_path().empty(),
                  "ShardingOptions: offload_param.device is nvme but offload_param.nvme_path is empty; give the "
                  "folder for the parameter files");
  ACCEL_CHECK_ARG(param.max_in_cpu() >= 0, "ShardingOptions: offload_param.max_in_cpu is ", param.max_in_cpu(),
                  ", expected >= 0 (elements of parameter shards kept in host memory)");
  const int64_t default_in_cpu = OffloadOptions().max_in_cpu();
  ACCEL_CHECK_ARG(param.max_in_cpu() == default_in_cpu || param.device() == OffloadDevice::nvme,
                  "ShardingOptions: offload_param.max_in_cpu is ", param.max_in_cpu(), " with offload_param.device ",
                  to_string(param.device()),
                  "; it splits the parameter shards between host memory and files "
                  "(device nvme)");
  ACCEL_CHECK_ARG(off.max_in_cpu() == default_in_cpu, "ShardingOptions: offload_optimizer.max_in_cpu is ",
                  off.max_in_cpu(), "; it is offload_param's (device nvme), expected the default ", default_in_cpu);
  ACCEL_CHECK_ARG(!param.delayed_update(),
                  "ShardingOptions: offload_param.delayed_update is set; the delayed update exists for "
                  "offload_optimizer only");
  ACCEL_CHECK_ARG(o.max_live_parameters() >= 0, "ShardingOptions: max_live_parameters is ", o.max_live_parameters(),
                  ", expected >= 0 (0: no bound)");
  const auto& precision = o.mixed_precision_policy();
  for (const auto& [what, dtype] :
       {std::pair{"param_dtype", precision.param_dtype()}, std::pair{"reduce_dtype", precision.reduce_dtype()}}) {
    if (!dtype) continue;
    ACCEL_CHECK_ARG(*dtype == c10::kFloat || *dtype == c10::kHalf || *dtype == c10::kBFloat16,
                    "ShardingOptions: mixed_precision_policy.", what, " is ", c10::toString(*dtype),
                    ", expected Float, Half or BFloat16");
    ACCEL_CHECK_ARG(shards_parameters(o.strategy()), "ShardingOptions: mixed_precision_policy.", what,
                    " is set with strategy ", to_string(o.strategy()),
                    "; the policy applies to sharded units (full_shard or hybrid_shard)");
  }
  if (shards_parameters(o.strategy())) {
    ACCEL_CHECK_ARG(!off.delayed_update(), "ShardingOptions: offload_optimizer.delayed_update is set with strategy ",
                    to_string(o.strategy()),
                    "; the delayed update exists under shard_optimizer and shard_grad_op only");
  }
}

}  // namespace accel
