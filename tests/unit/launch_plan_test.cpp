// What `accel launch` decides from flags + config: Accelerate's precedence
// rules and the exact environment each worker gets.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "accel/launch/launch_plan.h"
#include "support/environment.h"
#include "support/errors.h"
#include "support/launch.h"
#include "support/temp_dir.h"

namespace accel::launch {
namespace {

namespace fs = std::filesystem;
using accel::testing::expect_error;
using accel::testing::plan_for;
using accel::testing::ScopedEnv;
using accel::testing::TempDir;

class PlanLaunch : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    auto p = (dir_ / name).string();
    std::ofstream(p) << text;
    return p;
  }
  // `accel launch FLAGS... prog` on a machine with `gpus` GPUs and 8 cores.
  LaunchPlan plan(const std::vector<std::pair<std::string, std::string>>& flags, int gpus = 0,
                  std::map<std::string, std::string> env = {}) {
    return plan_for(flags, env_from_map(env), gpus, /*cores=*/8);
  }
  TempDir dir_{"launch_plan"};
  ScopedEnv hf_home_{"HF_HOME", (dir_ / "hf").string()};  // no default config unless a test writes one
};

TEST_F(PlanLaunch, CpuWithProcessesStartsThemAllWithAccelerateVariables) {
  auto p = plan({{"cpu", ""}, {"num_processes", "4"}, {"main_process_port", "29611"}});
  EXPECT_EQ(p.kind, LauncherKind::simple);
  EXPECT_EQ(p.local_processes, 4);
  ASSERT_TRUE(p.per_rank_env);
  auto e = worker_env(p, 2);
  std::map<std::string, std::string> expected = {
      {"ACCELERATE_DYNAMO_BACKEND", "NO"},
      {"ACCELERATE_DYNAMO_MODE", "default"},
      {"ACCELERATE_DYNAMO_USE_DYNAMIC", "False"},
      {"ACCELERATE_DYNAMO_USE_FULLGRAPH", "False"},
      {"ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION", "False"},
      {"ACCELERATE_MIXED_PRECISION", "no"},
      {"ACCELERATE_USE_CPU", "True"},
      {"GROUP_RANK", "0"},
      {"GROUP_WORLD_SIZE", "1"},
      {"KMP_AFFINITY", "granularity=fine,compact,1,0"},
      {"KMP_BLOCKTIME", "1"},
      {"LOCAL_RANK", "2"},
      {"LOCAL_WORLD_SIZE", "4"},
      {"MASTER_ADDR", "127.0.0.1"},
      {"MASTER_PORT", "29611"},
      {"OMP_NUM_THREADS", "2"},  // 8 physical cores / 4 processes, as Accelerate sets for CPU
      {"RANK", "2"},
      {"ROLE_NAME", "default"},
      {"ROLE_RANK", "2"},
      {"ROLE_WORLD_SIZE", "4"},
      {"TORCHELASTIC_MAX_RESTARTS", "0"},
      {"TORCHELASTIC_RESTART_COUNT", "0"},
      {"TORCHELASTIC_RUN_ID", "none"},
      {"TORCHELASTIC_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT"},
      {"TORCHELASTIC_USE_AGENT_STORE", "False"},
      {"TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"},
      {"WORLD_SIZE", "4"},
  };
  EXPECT_EQ(e, expected);
  ASSERT_EQ(p.defaults_used.size(), 4u);  // num_machines, mixed_precision, dynamo_backend, threads
  EXPECT_NE(p.defaults_used[0].find("--num_machines"), std::string::npos);
}

TEST_F(PlanLaunch, GradientAccumulationReachesEveryMode) {
  // Accelerate passes --gradient_accumulation_steps on only to DeepSpeed;
  // accel to every launcher, so the flag is never accepted and ignored.
  for (auto flags : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {{"cpu", ""}}, {{"cpu", ""}, {"num_processes", "2"}}, {{"multi_gpu", ""}, {"num_processes", "2"}}}) {
    flags.push_back({"gradient_accumulation_steps", "4"});
    auto p = plan(flags, 2);
    EXPECT_EQ(worker_env(p, 0).at("ACCELERATE_GRADIENT_ACCUMULATION_STEPS"), "4") << to_string(p.kind);
  }
  EXPECT_EQ(worker_env(plan({{"cpu", ""}}), 0).count("ACCELERATE_GRADIENT_ACCUMULATION_STEPS"), 0u);
  expect_error<std::invalid_argument>(
      [&] {
        plan({{"cpu", ""}, {"gradient_accumulation_steps", "0"}});
      },
      {"gradient_accumulation_steps 0: expected >= 1"});
}

TEST_F(PlanLaunch, UnpassedMixedPrecisionDefersToTheProgram) {
  auto p = plan({{"cpu", ""}, {"num_processes", "2"}});
  bool said = false;
  for (auto& line : p.defaults_used)
    if (line.find("--mixed_precision") != std::string::npos) {
      said = true;
      EXPECT_EQ(line.find("set to a value of `'no'`"), std::string::npos) << line;
      EXPECT_NE(line.find("AcceleratorOptions::mixed_precision"), std::string::npos) << line;
    }
  EXPECT_TRUE(said);
}

TEST_F(PlanLaunch, SingleProcessGetsNoRankVariables) {
  auto p = plan({{"cpu", ""}}, 0, {{"OMP_NUM_THREADS", "3"}});
  EXPECT_EQ(p.local_processes, 1);
  EXPECT_FALSE(p.per_rank_env);
  auto e = worker_env(p, 0);
  EXPECT_EQ(e.count("RANK"), 0u);
  EXPECT_EQ(e.count("MASTER_ADDR"), 0u);
  EXPECT_EQ(e.at("OMP_NUM_THREADS"), "3");  // taken from the launcher's environment
  EXPECT_EQ(p.defaults_used.front(), "\t`--num_processes` was set to a value of `1`");
}

TEST_F(PlanLaunch, GpuMachineDefaultsToEveryGpu) {
  auto p = plan({}, 4);
  EXPECT_EQ(p.kind, LauncherKind::multi_gpu);  // Accelerate turns multi-GPU on by itself
  EXPECT_EQ(p.local_processes, 4);
  EXPECT_EQ(p.defaults_used.front(), "\t`--num_processes` was set to a value of `4`");
  EXPECT_NE(p.defaults_used[1].find("More than one GPU was found"), std::string::npos);
  auto e = worker_env(p, 3);
  EXPECT_EQ(e.at("RANK"), "3");
  EXPECT_EQ(e.count("ACCELERATE_USE_CPU"), 0u);
  // --gpu_ids restricts the devices the workers see.
  auto ids = plan({{"multi_gpu", ""}, {"num_processes", "2"}, {"gpu_ids", "2,3"}}, 4);
  EXPECT_EQ(worker_env(ids, 0).at("CUDA_VISIBLE_DEVICES"), "2,3");
}

TEST_F(PlanLaunch, FlagsOverrideTheFile) {
  auto cfg = write("c.yaml",
                   "distributed_type: FSDP\nnum_processes: 2\nmixed_precision: bf16\nmain_process_port: 29612\n"
                   "gpu_ids: all\nfsdp_config:\n  fsdp_version: 2\n  fsdp_offload_params: true\n"
                   "  fsdp_state_dict_type: SHARDED_STATE_DICT\n  fsdp_auto_wrap_policy: SIZE_BASED_WRAP\n"
                   "  min_num_params: 2000\n");
  auto p = plan(
      {{"config_file", cfg}, {"mixed_precision", "fp16"}, {"fsdp_offload_params", "false"}, {"num_processes", "4"}});
  EXPECT_EQ(p.kind, LauncherKind::multi_gpu);
  EXPECT_EQ(p.num_processes, 4);
  EXPECT_TRUE(p.defaults_used.empty());
  auto e = worker_env(p, 0);
  EXPECT_EQ(e.at("ACCELERATE_MIXED_PRECISION"), "fp16");  // flag
  EXPECT_EQ(e.at("FSDP_OFFLOAD_PARAMS"), "false");        // flag over the section
  EXPECT_EQ(e.at("FSDP_VERSION"), "2");                   // file
  EXPECT_EQ(e.at("FSDP_STATE_DICT_TYPE"), "SHARDED_STATE_DICT");
  EXPECT_EQ(e.at("FSDP_MIN_NUM_PARAMS"), "2000");           // file key without the fsdp_ prefix
  EXPECT_EQ(e.at("FSDP_SHARDING_STRATEGY"), "FULL_SHARD");  // flag default
  EXPECT_EQ(e.at("FSDP_USE_ORIG_PARAMS"), "true");
  EXPECT_EQ(e.at("ACCELERATE_USE_FSDP"), "true");
  EXPECT_EQ(e.at("MASTER_PORT"), "29612");
  EXPECT_EQ(e.at("WORLD_SIZE"), "4");
  EXPECT_EQ(e.count("ACCELERATE_USE_CPU"), 0u);  // Accelerate's multi-GPU launcher does not set it
}

TEST_F(PlanLaunch, ParallelismConfigReachesTheWorkersAsAccelerateSetsIt) {
  auto cfg = write("nd.yaml",
                   "distributed_type: FSDP\nnum_processes: 4\nmain_process_port: 29614\nfsdp_config:\n"
                   "  fsdp_version: 2\nparallelism_config:\n  parallelism_config_dp_shard_size: 2\n"
                   "  parallelism_config_cp_size: 2\n  parallelism_config_cp_comm_strategy: alltoall\n");
  auto e = worker_env(plan({{"config_file", cfg}}), 0);
  EXPECT_EQ(e.at("ACCELERATE_USE_PARALLELISM_CONFIG"), "true");
  EXPECT_EQ(e.at("PARALLELISM_CONFIG_DP_REPLICATE_SIZE"), "1");  // flag default
  EXPECT_EQ(e.at("PARALLELISM_CONFIG_DP_SHARD_SIZE"), "2");
  EXPECT_EQ(e.at("PARALLELISM_CONFIG_CP_SIZE"), "2");
  EXPECT_EQ(e.at("PARALLELISM_CONFIG_CP_COMM_STRATEGY"), "alltoall");
  EXPECT_EQ(e.at("PARALLELISM_CONFIG_CP_BACKEND"), "torch");
  EXPECT_EQ(e.count("PARALLELISM_CONFIG_SP_SEQ_LENGTH"), 0u);  // only with sp_size > 1
  // Without the section, nothing of it.
  auto plain = write("plain.yaml", "distributed_type: FSDP\nnum_processes: 2\nmain_process_port: 29615\n");
  EXPECT_EQ(worker_env(plan({{"config_file", plain}}), 0).count("ACCELERATE_USE_PARALLELISM_CONFIG"), 0u);
  // The flag without --use_fsdp is refused, as by Accelerate.
  expect_error<std::invalid_argument>(
      [&] {
        plan({{"use_parallelism_config", ""}, {"multi_gpu", ""}});
      },
      {"--use_parallelism_config", "--use_fsdp"});
}

TEST_F(PlanLaunch, DefaultConfigFileIsReadUnlessCpu) {
  fs::create_directories(dir_ / "hf" / "accelerate");
  write("hf/accelerate/default_config.yaml",
        "distributed_type: MULTI_GPU\nnum_processes: 3\nmain_process_port: 29613\n");
  auto p = plan({});
  EXPECT_EQ(p.kind, LauncherKind::multi_gpu);
  EXPECT_EQ(p.local_processes, 3);
  ASSERT_TRUE(p.config_file);
  // Accelerate ignores the default file with --cpu.
  auto cpu = plan({{"cpu", ""}});
  EXPECT_FALSE(cpu.config_file);
  EXPECT_EQ(cpu.local_processes, 1);
}

TEST_F(PlanLaunch, DeepSpeedVariables) {
  auto cfg = write("ds.yaml",
                   "distributed_type: DEEPSPEED\nnum_processes: 2\nmixed_precision: bf16\nmain_process_port: 29614\n"
                   "deepspeed_config:\n  zero_stage: 3\n  offload_optimizer_device: cpu\n  offload_param_device: none\n"
                   "  gradient_accumulation_steps: 4\n  gradient_clipping: 1.0\n  zero3_init_flag: true\n"
                   "  zero3_save_16bit_model: true\n");
  auto p = plan({{"config_file", cfg}}, 0, {{"PYTHONPATH", "/a::/b"}});
  EXPECT_EQ(p.kind, LauncherKind::deepspeed);
  auto e = worker_env(p, 1);
  EXPECT_EQ(e.at("ACCELERATE_USE_DEEPSPEED"), "true");
  EXPECT_EQ(e.at("ACCELERATE_DEEPSPEED_ZERO_STAGE"), "3");
  EXPECT_EQ(e.at("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"), "cpu");
  EXPECT_EQ(e.at("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"), "none");
  EXPECT_EQ(e.at("ACCELERATE_GRADIENT_ACCUMULATION_STEPS"), "4");
  EXPECT_EQ(e.at("ACCELERATE_GRADIENT_CLIPPING"), "1.0");
  EXPECT_EQ(e.at("ACCELERATE_DEEPSPEED_ZERO3_INIT"), "true");
  EXPECT_EQ(e.at("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"), "true");
  EXPECT_EQ(e.at("ACCELERATE_MIXED_PRECISION"), "bf16");
  EXPECT_EQ(e.at("ACCELERATE_CONFIG_DS_FIELDS"),
            "gradient_accumulation_steps,gradient_clipping,offload_optimizer_device,offload_param_device,"
            "zero3_init_flag,zero3_save_16bit_model,zero_stage,mixed_precision");
  EXPECT_EQ(e.at("PYTHONPATH"), "/a:/b:" + fs::current_path().string());
  EXPECT_EQ(e.at("OMP_NUM_THREADS"), "1");  // torchrun's default
  EXPECT_EQ(e.at("RANK"), "1");
}

TEST_F(PlanLaunch, MultiNodeRanks) {
  auto p = plan({{"cpu", ""},
                 {"num_processes", "4"},
                 {"num_machines", "2"},
                 {"machine_rank", "1"},
                 {"main_process_ip", "10.1.2.3"},
                 {"main_process_port", "29615"}});
  EXPECT_EQ(p.local_processes, 2);
  auto e = worker_env(p, 1);
  EXPECT_EQ(e.at("RANK"), "3");
  EXPECT_EQ(e.at("LOCAL_RANK"), "1");
  EXPECT_EQ(e.at("GROUP_RANK"), "1");
  EXPECT_EQ(e.at("GROUP_WORLD_SIZE"), "2");
  EXPECT_EQ(e.at("WORLD_SIZE"), "4");
  EXPECT_EQ(e.at("LOCAL_WORLD_SIZE"), "2");
  EXPECT_EQ(e.at("MASTER_ADDR"), "10.1.2.3");
  EXPECT_EQ(e.at("OMP_NUM_THREADS"), "4");  // 8 cores / 2 local processes
}

TEST_F(PlanLaunch, BadCombinationsAreErrors) {
  expect_error<std::invalid_argument>([&] { plan({{"cpu", ""}, {"multi_gpu", ""}}); }, {"only use one of"});
  expect_error<std::invalid_argument>([&] { plan({{"multi_gpu", ""}, {"num_processes", "1"}}); }, {"at least 2"});
  expect_error<std::invalid_argument>(
      [&] {
        plan({{"cpu", ""},
              {"num_processes", "3"},
              {"num_machines", "2"},
              {"main_process_ip", "h"},
              {"main_process_port", "1"}});
      },
      {"not a multiple"});
  expect_error<std::invalid_argument>(
      [&] {
        plan({{"cpu", ""}, {"num_processes", "2"}, {"num_machines", "2"}});
      },
      {"--main_process_ip"});
  expect_error<std::invalid_argument>(
      [&] {
        plan({{"cpu", ""}, {"machine_rank", "2"}, {"num_machines", "2"}});
      },
      {"machine_rank 2"});
  auto cfg = write("m.yaml", "distributed_type: MULTI_GPU\n");
  expect_error<std::invalid_argument>([&] { plan({{"config_file", cfg}}); }, {"--num_processes"});
  EXPECT_THROW(LaunchArgs::defaults().set_flag("mixed_precision", "fp32"), std::invalid_argument);
  EXPECT_THROW(LaunchArgs::defaults().set_flag("num_processes", "x"), std::invalid_argument);
}

TEST_F(PlanLaunch, BusyPortIsReplacedOnOneMachine) {
  auto p = plan({{"cpu", ""}, {"num_processes", "2"}, {"main_process_port", "0"}});
  EXPECT_GT(p.master_port, 0);
  EXPECT_NE(p.master_port, 29500);
}

}  // namespace
}  // namespace accel::launch
