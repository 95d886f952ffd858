// Accelerate's config file: reading, checking, writing, updating.
#include <fstream>
#include <optional>
#include <source_location>

#include <gtest/gtest.h>

#include "accel/launch/cluster_config.h"
#include "support/environment.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"

namespace accel::launch {
namespace {

using accel::testing::expect_error;
using accel::testing::read_file;
using accel::testing::ScopedEnv;
using accel::testing::TempDir;

// Every key Accelerate's ClusterConfig has, as `accelerate config` writes them.
const char* kEveryKey = R"(command_file: null
commands: null
compute_environment: LOCAL_MACHINE
debug: true
deepspeed_config:
  deepspeed_config_file: none
  deepspeed_hostfile: /etc/hosts
  deepspeed_multinode_launcher: standard
  gradient_accumulation_steps: 4
  gradient_clipping: 1.0
  offload_optimizer_device: cpu
  offload_param_device: nvme
  offload_param_nvme_path: /nvme
  zero3_init_flag: true
  zero3_save_16bit_model: false
  zero_stage: 3
distributed_type: DEEPSPEED
downcast_bf16: 'no'
dynamo_config:
  dynamo_backend: INDUCTOR
  dynamo_mode: max-autotune
  dynamo_use_fullgraph: true
enable_cpu_affinity: false
fp8_config:
  backend: TE
  fp8_format: HYBRID
fsdp_config:
  fsdp_activation_checkpointing: false
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_backward_prefetch: BACKWARD_PRE
  fsdp_cpu_ram_efficient_loading: true
  fsdp_forward_prefetch: false
  fsdp_offload_params: false
  fsdp_reshard_after_forward: FULL_SHARD
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_sync_module_states: true
  fsdp_transformer_layer_cls_to_wrap: BertLayer
  fsdp_use_orig_params: true
  fsdp_version: 1
gpu_ids: 0,1
machine_rank: 1
main_process_ip: 10.0.0.1
main_process_port: 29501
main_training_function: main
megatron_lm_config:
  megatron_lm_tp_degree: 2
mixed_precision: bf16
mpirun_config: {}
num_machines: 2
num_processes: 8
parallelism_config: {}
rdzv_backend: c10d
same_network: true
tpu_env: []
tpu_name: null
tpu_use_cluster: false
tpu_use_sudo: false
tpu_vm: null
tpu_zone: null
use_cpu: false
)";

TEST(ClusterConfig, ReadsEveryAccelerateKey) {
  auto c = ClusterConfig::parse(kEveryKey);
  EXPECT_EQ(c.get("distributed_type").str(), "DEEPSPEED");
  EXPECT_EQ(c.get("num_processes").integer, 8);
  EXPECT_EQ(c.get("gpu_ids").str(), "0,1");
  EXPECT_EQ(c.get("downcast_bf16").kind, Value::Kind::text);  // quoted 'no' stays a string
  EXPECT_EQ(c.get("same_network").kind, Value::Kind::boolean);
  EXPECT_TRUE(c.get("tpu_name").is_none());
  EXPECT_EQ(c.section("deepspeed_config").at("zero_stage").integer, 3);
  EXPECT_EQ(c.section("deepspeed_config").at("gradient_clipping").str(), "1.0");
  EXPECT_EQ(c.section("fsdp_config").at("fsdp_transformer_layer_cls_to_wrap").str(), "BertLayer");
  EXPECT_EQ(c.section("fp8_config").at("backend").str(), "TE");
  EXPECT_TRUE(c.section("mpirun_config").empty());
}

TEST(ClusterConfig, RoundTripsThroughYaml) {
  auto c = ClusterConfig::parse(kEveryKey);
  auto again = ClusterConfig::parse(c.to_yaml());
  EXPECT_EQ(c, again);
  EXPECT_EQ(c.to_yaml(), again.to_yaml());
  // Written like yaml.safe_dump: sorted keys, None and empty sections left out, strings quoted where needed.
  const auto y = c.to_yaml();
  EXPECT_NE(y.find("downcast_bf16: 'no'\n"), std::string::npos) << y;
  EXPECT_EQ(y.find("tpu_name"), std::string::npos);
  EXPECT_EQ(y.find("mpirun_config"), std::string::npos);
  EXPECT_LT(y.find("compute_environment"), y.find("debug"));
  EXPECT_LT(y.find("deepspeed_config:\n  deepspeed_config_file: none"), y.find("distributed_type"));
}

TEST(ClusterConfig, ReadsTheJsonAccelerateConfigDefaultWrites) {
  auto c = ClusterConfig::parse(R"({
  "compute_environment": "LOCAL_MACHINE",
  "debug": false,
  "distributed_type": "NO",
  "downcast_bf16": false,
  "enable_cpu_affinity": false,
  "machine_rank": 0,
  "main_training_function": "main",
  "mixed_precision": "no",
  "num_machines": 1,
  "num_processes": 1,
  "rdzv_backend": "static",
  "same_network": false,
  "tpu_use_cluster": false,
  "tpu_use_sudo": false,
  "use_cpu": true
})");
  EXPECT_EQ(c.get("use_cpu"), Value::of_bool(true));
  EXPECT_EQ(c.get("mixed_precision").str(), "no");
  EXPECT_EQ(c.get("num_processes").integer, 1);
}

TEST(ClusterConfig, FillsAccelerateDefaultsAndConvertsLegacyKeys) {
  auto c = ClusterConfig::parse("distributed_type: NO\nfp16: true\ndynamo_backend: INDUCTOR\n");
  EXPECT_EQ(c.get("compute_environment").str(), "LOCAL_MACHINE");
  // A bare NO is a boolean in YAML 1.1: read as the word, written quoted as PyYAML does.
  EXPECT_EQ(c.get("distributed_type"), Value::of_text("NO"));
  EXPECT_NE(c.to_yaml().find("distributed_type: 'NO'\n"), std::string::npos) << c.to_yaml();
  EXPECT_EQ(c.get("mixed_precision").str(), "fp16");
  EXPECT_EQ(c.get("num_processes").integer, 1);  // distributed_type NO
  EXPECT_EQ(c.get("rdzv_backend").str(), "static");
  EXPECT_EQ(c.get("use_cpu"), Value::of_bool(false));
  EXPECT_EQ(c.section("dynamo_config").at("dynamo_backend").str(), "INDUCTOR");
  EXPECT_TRUE(c.get("fp16").is_none());
  auto multi = ClusterConfig::parse("distributed_type: MULTI_GPU\n");
  EXPECT_EQ(multi.get("num_processes").integer, -1);  // ClusterConfig's "pass --num_processes"
}

// Expects the config text `yaml` refused with every one of `fragments`.
void expect_parse_error(const std::string& yaml, const std::vector<std::string>& fragments,
                        std::source_location where = std::source_location::current()) {
  SCOPED_TRACE("the config:\n" + yaml);
  expect_error<std::invalid_argument>([&] { ClusterConfig::parse(yaml, "f.yaml"); }, fragments, where);
}

TEST(ClusterConfig, BadKeysAndValuesNameTheKeyAndTheAllowedValues) {
  expect_parse_error("distributed_type: NO\nnum_procs: 2\n",
                     {"f.yaml", "unknown config key 'num_procs'", "num_processes"});
  expect_parse_error("distributed_type: MULTI_TPU\n", {"'distributed_type'", "MULTI_TPU", "MULTI_GPU", "FSDP"});
  expect_parse_error("distributed_type: NO\nmixed_precision: fp32\n", {"'mixed_precision'", "no, fp16, bf16, fp8"});
  expect_parse_error("distributed_type: NO\nnum_processes: two\n", {"'num_processes'", "integer", "two"});
  expect_parse_error("distributed_type: NO\nuse_cpu: maybe\n", {"'use_cpu'", "true or false"});
  expect_parse_error("distributed_type: FSDP\nfsdp_config:\n  fsdp_state_dict_type: HALF\n",
                     {"fsdp_config.fsdp_state_dict_type", "FULL_STATE_DICT"});
  expect_parse_error("distributed_type: FSDP\nfsdp_config:\n  fsdp_wrap: x\n",
                     {"fsdp_config.fsdp_wrap", "fsdp_auto_wrap_policy"});
  expect_parse_error("distributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stage: 4\n", {"zero_stage", "0, 1, 2, 3"});
  expect_parse_error("num_processes: 2\n", {"distributed_type", "missing"});
  expect_parse_error("compute_environment: AMAZON_SAGEMAKER\ndistributed_type: NO\n",
                     {"AMAZON_SAGEMAKER", "LOCAL_MACHINE"});
  expect_parse_error("- a\n- b\n", {"mapping"});
}

TEST(ClusterConfig, SaveLoadUpdateOnDisk) {
  const TempDir dir("cluster_config");
  const auto path = (dir / "sub" / "c.yaml").string();
  ClusterConfig c;
  c.set("distributed_type", Value::of_text("MULTI_CPU"));
  c.set("num_processes", Value::of_int(4));
  c.set("fsdp_config", "fsdp_version", Value::of_int(2));
  c.save(path);
  auto loaded = ClusterConfig::load(path);
  EXPECT_EQ(loaded.get("num_processes").integer, 4);
  EXPECT_EQ(loaded.get("machine_rank").integer, 0);  // filled like ClusterConfig does
  EXPECT_EQ(loaded.section("fsdp_config").at("fsdp_version").integer, 2);
  // update: an older file gains the new keys and keeps what was set.
  { std::ofstream(path) << "distributed_type: MULTI_GPU\nnum_processes: 3\ngpu_ids: '1,2,3'\n"; }
  ClusterConfig::load(path).save(path);
  auto updated = ClusterConfig::load(path);
  EXPECT_EQ(updated.get("num_processes").integer, 3);
  EXPECT_EQ(updated.get("gpu_ids").str(), "1,2,3");
  EXPECT_EQ(updated.get("enable_cpu_affinity"), Value::of_bool(false));
  const std::string text = read_file(path);
  EXPECT_NE(text.find("rdzv_backend: static\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gpu_ids: 1,2,3\n"), std::string::npos) << text;
  EXPECT_THROW(ClusterConfig::load((dir / "missing.yaml").string()), std::invalid_argument);
}

TEST(ClusterConfig, DefaultLocationFollowsHfHomeThenXdgThenHome) {
  ScopedEnv env("HF_HOME", "/h");
  env.set("XDG_CACHE_HOME", "/x");
  env.set("HOME", "/home/u");
  EXPECT_EQ(default_config_path(), "/h/accelerate/default_config.yaml");
  env.set("HF_HOME", std::nullopt);
  EXPECT_EQ(default_config_path(), "/x/huggingface/accelerate/default_config.yaml");
  env.set("XDG_CACHE_HOME", std::nullopt);
  EXPECT_EQ(default_config_path(), "/home/u/.cache/huggingface/accelerate/default_config.yaml");
}

TEST(ClusterConfig, PythonStyleStrings) {
  EXPECT_EQ(Value::of_bool(true).str(), "True");
  EXPECT_EQ(Value::of_number(1.0).str(), "1.0");
  EXPECT_EQ(Value::of_number(0.5).str(), "0.5");
  EXPECT_EQ(Value::of_number(1e-5).str(), "1e-05");
  EXPECT_EQ(Value::of_number(1e16).str(), "1e+16");
  EXPECT_EQ(Value::of_number(100000000.0).str(), "100000000.0");
  EXPECT_EQ(resolve_plain_scalar("yes"), Value::of_bool(true));
  EXPECT_EQ(resolve_plain_scalar("1e8"), Value::of_text("1e8"));      // YAML 1.1 floats need a dot
  EXPECT_EQ(resolve_plain_scalar("1.5e3"), Value::of_text("1.5e3"));  // and a signed exponent
  EXPECT_EQ(resolve_plain_scalar("1.5e+3"), Value::of_number(1500));
  EXPECT_EQ(resolve_plain_scalar("0,1"), Value::of_text("0,1"));
  EXPECT_TRUE(resolve_plain_scalar("~").is_none());
}

}  // namespace
}  // namespace accel::launch
