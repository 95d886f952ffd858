// Parameter sharding with the parameter shards on NVMe (offload_param
// device nvme under full_shard / hybrid_shard, DeepSpeed ZeRO-Infinity's
// parameter offload) on 2 and 3 CPU ranks over Gloo: it trains bit for bit
// as the shards in host memory (offload_param cpu) do, and as one process
// of plain LibTorch does; the shards (fp32 masters and the bf16 copy the
// gathers read) are the files' pages, not anonymous memory, and the files
// hold their bytes; max_in_cpu keeps the first units in memory; the files
// and their folder are gone with the model and optimizer; checkpoints
// resume exactly; the DeepSpeed JSON and Accelerate's variables select it;
// bad input is refused by name.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "accel/accelerator.h"
#include "accel/parallel/fsdp/sharded_unit.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/fsdp_training.h"
#include "support/mapped_files.h"
#include "support/temp_dir.h"
#include "support/unit_stack.h"

using namespace accel;
using namespace accel::testing;
using namespace accel::testing::unit_stack;
using namespace accel::testing::fsdp_training;
namespace fs = std::filesystem;

namespace {

// The process's environment (the ranks' variables) with `vars` on top.
EnvLookup env_with(std::map<std::string, std::string> vars) {
  auto base = process_env();
  return [vars = std::move(vars), base](const std::string& name) -> std::optional<std::string> {
    if (auto it = vars.find(name); it != vars.end()) return it->second;
    return base(name);
  };
}

// Trains `nvme` and the same variant with its shards in host memory side
// by side for 4 steps: the same parameters and clipped norms, bit for bit;
// and, unless bf16, the one-process reference's within 1e-5.
void expect_equals_host_and_reference(Variant nvme) {
  run_distributed(nvme.world, [&] {
    Variant host = nvme;
    host.param_nvme_path.clear();
    host.offload_param = true;
    const int64_t steps = 4;
    Trainer on_host(host);
    on_host.train(steps);
    Trainer in_files(nvme);
    in_files.train(steps);
    EXPECT_GT(in_files.sharding().memory().files, 0);
    const auto got = in_files.params();
    EXPECT_EQ(max_diff(got, on_host.params()), 0.0);
    EXPECT_EQ(in_files.norms, on_host.norms);
    if (!nvme.bf16) {
      const auto ref = reference(nvme, steps);
      EXPECT_LT(max_diff(got, ref.params), 1e-5);
      ASSERT_EQ(in_files.norms.size(), ref.norms.size());
      for (size_t i = 0; i < ref.norms.size(); ++i) EXPECT_NEAR(in_files.norms[i], ref.norms[i], 1e-5);
    }
    std::vector<torch::Tensor> all;
    for (const auto& [name, p] : got) all.push_back(p);
    expect_ranks_agree(all);
  });
}

}  // namespace

TEST(FullShardParamNvme, TrainsAsShardsInHostMemoryBitForBitAndAsOneProcess) {
  TempDir dir;
  const auto swap = dir.path() / "params";
  // A crashed run's leftovers in the same folder: never read, never removed.
  const auto stale = swap / "accel_params_crashed_1_0";
  fs::create_directories(stale);
  std::ofstream(stale / "h.0.params") << std::string(8192, '\x7f');
  expect_equals_host_and_reference({.accumulation = 2, .clip = 0.05, .param_nvme_path = swap});
  // Stepped by SGD's own step() in the files, not by CPU Adam.
  expect_equals_host_and_reference({.clip = 0.05, .sgd = true, .param_nvme_path = swap});
  // The optimizer state in files too (offload_optimizer nvme).
  expect_equals_host_and_reference({.clip = 0.05, .nvme_path = dir.path() / "state", .param_nvme_path = swap});
  expect_equals_host_and_reference({.world = 3, .freeze_block = true, .checkpoint = true, .param_nvme_path = swap});
  // Gathered in bf16: the bf16 copy is the file's too.
  expect_equals_host_and_reference({.world = 3, .clip = 0.05, .bf16 = true, .param_nvme_path = swap});
  expect_equals_host_and_reference(
      {.world = 2, .reshard_after_forward = false, .forward_prefetch = true, .param_nvme_path = swap});
  EXPECT_EQ(files_in(swap), 1u);  // the stale folder only: each run's own is gone
  EXPECT_EQ(files_in(stale), 1u);
  EXPECT_EQ(files_in(dir.path() / "state"), 0u);
}

// Hybrid: two groups of two, the shards in files against the same in host
// memory (two hybrid Accelerators in one process: their groups' store keys
// must not meet) and the one-process reference.
TEST(FullShardParamNvme, HybridShardEqualsHostAndOneProcess) {
  TempDir dir;
  expect_equals_host_and_reference(
      {.world = 4, .clip = 0.05, .hybrid_shard_size = 2, .param_nvme_path = dir.path() / "params"});
  EXPECT_EQ(files_in(dir.path() / "params"), 0u);
}

// Every shard, and the bf16 copy the gathers read, lies in a mapping of its
// unit's file, and the file read from the drive holds its bytes; host
// memory keeps only the gradient shards. Gone with the model and optimizer.
TEST(FullShardParamNvme, ShardsAreTheFilesPagesAndGoWithTheModel) {
  TempDir dir;
  const auto swap = dir.path() / "params";
  run_distributed(2, [&] {
    {
      Trainer t({.clip = 0.05, .bf16 = true, .param_nvme_path = swap});
      t.train(2);
      t.acc.wait_for_everyone();  // the last update is done
      auto& sharding = t.sharding();
      const auto maps = mappings_under(swap);
      EXPECT_EQ(maps.size(), sharding.units().size());  // a file per unit
      int64_t grad_bytes = 0, checked = 0;
      for (const auto& unit : sharding.units()) {
        ASSERT_FALSE(unit->file_path().empty()) << unit->path();
        EXPECT_EQ(unit->file_path().parent_path().parent_path(), swap);
        for (size_t i = 0; i < unit->parameters().size(); ++i) {
          if (unit->piece(i).numel() == 0) continue;
          for (const auto& t : {unit->piece(i), unit->piece_copy(i)}) {
            ASSERT_TRUE(t.defined());  // bf16: the copy is a tensor of its own
            const auto m = mapping_of(t, maps);
            ASSERT_TRUE(m.has_value()) << unit->path() << " piece " << i << " is not in a file under " << swap;
            EXPECT_EQ(m->file, unit->file_path());
            EXPECT_TRUE(file_holds(t.contiguous(), *m)) << unit->path() << " piece " << i;
            ++checked;
          }
          if (unit->parameters()[i].requires_grad()) grad_bytes += unit->piece_grad(i).nbytes();
        }
      }
      EXPECT_GT(checked, 0);
      const auto memory = sharding.memory();
      EXPECT_EQ(memory.shards, 0);         // nothing kept on the device between steps
      EXPECT_GE(memory.host, grad_bytes);  // the gradient shards (padding included) ...
      // ... and nothing else: per element, 4 bytes of fp32 gradient in
      // memory, 4 of fp32 master and 2 of bf16 copy in the files.
      EXPECT_EQ(memory.files * 2, memory.host * 3);
    }
    EXPECT_TRUE(mappings_under(swap).empty());
  });
  EXPECT_EQ(files_in(swap), 0u);
}

// max_in_cpu: the units whose shards lie within the first max_in_cpu
// elements stay in host memory; the numbers do not change.
TEST(FullShardParamNvme, MaxInCpuKeepsTheFirstUnitsInMemory) {
  TempDir dir;
  const auto swap = dir.path() / "params";
  run_distributed(2, [&] {
    Trainer all_files({.param_nvme_path = swap});
    std::vector<int64_t> shard_numels;
    for (const auto& unit : all_files.sharding().units()) {
      std::vector<std::pair<std::string, torch::Tensor>> named;
      for (size_t i = 0; i < unit->parameters().size(); ++i)
        named.emplace_back(unit->names()[i], unit->parameters()[i]);
      shard_numels.push_back(fsdp::ShardedUnit::shard_numel(named, 2));
    }
    ASSERT_GE(shard_numels.size(), 3u);
    const int64_t room = shard_numels[0] + shard_numels[1];  // the first two units' shards exactly
    Trainer split({.param_nvme_path = swap, .max_in_cpu = room});
    const auto& units = split.sharding().units();
    EXPECT_TRUE(units[0]->file_path().empty());
    EXPECT_TRUE(units[1]->file_path().empty());
    for (size_t k = 2; k < units.size(); ++k) EXPECT_FALSE(units[k]->file_path().empty()) << units[k]->path();
    EXPECT_EQ(mappings_under(swap).size(), units.size() - 2 + all_files.sharding().units().size());
    Trainer host({.offload_param = true});
    for (auto* t : {&all_files, &split, &host}) t->train(3);
    EXPECT_EQ(max_diff(split.params(), host.params()), 0.0);
    EXPECT_EQ(max_diff(all_files.params(), host.params()), 0.0);
  });
  EXPECT_EQ(files_in(swap), 0u);
}

// save_state writes the shards in files as any other; load_state writes
// them back into the files (or into host memory, for a run that does not
// use files), under both state dict types.
TEST(FullShardParamNvme, SaveAndLoadStateResumeExactlyEitherWay) {
  TempDir dir;
  const auto swap = dir.path() / "params";
  for (const bool sharded_state : {false, true}) {
    run_distributed(2, [&] {
      const Variant in_files{.accumulation = 2, .clip = 0.05, .sharded_state = sharded_state, .param_nvme_path = swap};
      Trainer straight(in_files);
      ASSERT_GT(straight.sharding().memory().files, 0);
      straight.train(2);
      const auto ckpt = dir.path() / (sharded_state ? "sharded" : "full");
      straight.acc.save_state(ckpt);
      straight.train(2);
      const auto want = straight.params();
      Variant on_host = in_files;
      on_host.param_nvme_path.clear();
      on_host.offload_param = true;
      for (const Variant& v : {in_files, on_host}) {
        Trainer resumed(v);
        EXPECT_EQ(resumed.sharding().memory().files > 0, !v.param_nvme_path.empty());
        resumed.acc.load_state(ckpt);
        resumed.first = straight.first / 2;  // the same rows as the second half
        resumed.train(2);
        EXPECT_EQ(max_diff(resumed.params(), want), 0.0)
            << (v.param_nvme_path.empty() ? "host" : "files") << (sharded_state ? ", sharded" : ", full");
      }
    });
  }
  EXPECT_EQ(files_in(swap), 0u);
}

// A DeepSpeed stage-3 JSON (offload_param device nvme, DeepSpeed's other
// keys at their defaults) and Accelerate's variables select it; the
// variables leave max_in_cpu at DeepSpeed's 1e9, which holds this model in
// memory, as DeepSpeed would.
TEST(FullShardParamNvme, DeepSpeedJsonAndAccelerateVariablesSelectIt) {
  TempDir dir;
  const auto swap = dir.path() / "params";
  const auto config = dir.path() / "ds.json";
  std::ofstream(config) << R"({"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 1,
    "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"},
      "offload_param": {"device": "nvme", "nvme_path": ")"
                        << swap.string() << R"(", "buffer_count": 5, "buffer_size": 1e8, "max_in_cpu": 0,
                        "pin_memory": true}}})";
  run_distributed(2, [&] {
    Trainer host({.offload_param = true});
    host.train(2);
    Trainer from_json({}, AcceleratorOptions().env(env_with({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                                             {"ACCELERATE_DEEPSPEED_CONFIG_FILE", config.string()}})));
    const auto& json_options = from_json.sharding().options().offload_param();
    EXPECT_EQ(json_options.device(), OffloadDevice::nvme);
    EXPECT_EQ(json_options.nvme_path(), swap);
    EXPECT_EQ(json_options.max_in_cpu(), 0);
    for (const auto& unit : from_json.sharding().units()) EXPECT_FALSE(unit->file_path().empty()) << unit->path();
    from_json.train(2);
    EXPECT_EQ(max_diff(from_json.params(), host.params()), 0.0);

    Trainer from_vars(
        {}, AcceleratorOptions().env(env_with({{"ACCELERATE_USE_DEEPSPEED", "true"},
                                               {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"},
                                               {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "cpu"},
                                               {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "nvme"},
                                               {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_NVME_PATH", swap.string()}})));
    const auto& var_options = from_vars.sharding().options().offload_param();
    EXPECT_EQ(var_options.device(), OffloadDevice::nvme);
    EXPECT_EQ(var_options.nvme_path(), swap);
    EXPECT_EQ(var_options.max_in_cpu(), 1'000'000'000);
    EXPECT_EQ(from_vars.sharding().memory().files, 0);
    from_vars.train(2);
    EXPECT_EQ(max_diff(from_vars.params(), host.params()), 0.0);
  });
  EXPECT_EQ(files_in(swap), 0u);
}

TEST(FullShardParamNvme, BadInputIsRefusedByName) {
  TempDir dir;
  std::ofstream(dir.path() / "file") << "x";
  run_distributed(2, [&] {
    auto prepare = [](AcceleratorOptions options) {
      Accelerator acc(std::move(options));
      Stack net;
      acc.prepare(net, make_optimizer(net));
    };
    auto with = [](OffloadOptions param, ShardingStrategy strategy = ShardingStrategy::full_shard) {
      return AcceleratorOptions().sharding(ShardingOptions().strategy(strategy).offload_param(param));
    };
    const auto nvme = OffloadOptions().device(OffloadDevice::nvme);
    // No folder.
    expect_error<std::invalid_argument>([&] { prepare(with(nvme)); },
                                        {"offload_param.device is nvme", "offload_param.nvme_path is empty"});
    // A folder that cannot be made: a file stands where it would be.
    const auto unwritable = dir.path() / "file" / "params";
    expect_error<std::runtime_error>([&] { prepare(with(OffloadOptions(nvme).nvme_path(unwritable))); },
                                     {unwritable.string()});
    // A strategy that keeps every parameter on every rank.
    expect_error<std::invalid_argument>(
        [&] { prepare(with(OffloadOptions(nvme).nvme_path(dir.path()), ShardingStrategy::shard_grad_op)); },
        {"offload_param.device is nvme", "shard_grad_op", "full_shard or hybrid_shard"});
    expect_error<std::invalid_argument>(
        [&] { prepare(with(OffloadOptions(nvme).nvme_path(dir.path()).max_in_cpu(-1))); },
        {"offload_param.max_in_cpu is -1", ">= 0"});
    // Accelerate's variables: nvme without its path, and under stage 2.
    const std::map<std::string, std::string> vars{{"ACCELERATE_USE_DEEPSPEED", "true"},
                                                  {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"},
                                                  {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "nvme"}};
    expect_error<std::invalid_argument>([&] { prepare(AcceleratorOptions().env(env_with(vars))); },
                                        {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_NVME_PATH"});
    auto stage2 = vars;
    stage2["ACCELERATE_DEEPSPEED_ZERO_STAGE"] = "2";
    stage2["ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_NVME_PATH"] = dir.path().string();
    expect_error<std::invalid_argument>([&] { prepare(AcceleratorOptions().env(env_with(stage2))); },
                                        {"offload_param.device = \"nvme\"", "stage 2", "needs stage 3"});
  });
  EXPECT_EQ(files_in(dir.path()), 1u);  // the file only: no folder left by a refused run
}
