// ShardingOptions' checks and FlatLayout: padding, rank ranges, the
// zero_layout.json round trip and its refusals.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "accel/accelerator_options.h"
#include "accel/parallel/sharding_options.h"
#include "accel/parallel/zero/flat_layout.h"
#include "support/errors.h"

using namespace accel;
using accel::testing::expect_error;
using accel::zero::FlatLayout;

namespace {

std::vector<std::vector<std::pair<std::string, torch::Tensor>>> two_groups() {
  return {{{"a.weight", torch::zeros({4, 3})}, {"a.bias", torch::zeros({4})}},
          {{"b.weight", torch::zeros({5}, torch::kBFloat16)}}};
}

}  // namespace

TEST(ShardingOptions, DefaultsAreDeepSpeeds) {
  ShardingOptions o;
  EXPECT_EQ(o.strategy(), ShardingStrategy::shard_grad_op);
  EXPECT_EQ(o.reduce_bucket_size(), 500'000'000);
  EXPECT_TRUE(o.overlap_comm());
  EXPECT_FALSE(o.consolidated_checkpoint());
  EXPECT_EQ(o.offload_optimizer().device(), OffloadDevice::none);
  EXPECT_TRUE(o.offload_optimizer().pin_memory());
  EXPECT_EQ(o.offload_optimizer().io_threads(), 4);
  EXPECT_NO_THROW(check_sharding_options(o));
  EXPECT_FALSE(AcceleratorOptions().sharding().has_value());
}

TEST(ShardingOptions, BadValuesAreNamed) {
  expect_error<std::invalid_argument>([] { check_sharding_options(ShardingOptions().reduce_bucket_size(0)); },
                                      {"reduce_bucket_size", "0"});
  expect_error<std::invalid_argument>(
      [] { check_sharding_options(ShardingOptions().offload_optimizer(OffloadOptions().io_threads(-2))); },
      {"io_threads", "-2"});
  expect_error<std::invalid_argument>(
      [] { check_sharding_options(ShardingOptions().offload_optimizer(OffloadOptions().device(OffloadDevice::nvme))); },
      {"nvme_path"});
  // Parameter offload: only with parameter sharding; to NVMe with a folder.
  const auto cpu = OffloadOptions().device(OffloadDevice::cpu);
  expect_error<std::invalid_argument>([&] { check_sharding_options(ShardingOptions().offload_param(cpu)); },
                                      {"offload_param.device is cpu", "shard_grad_op", "full_shard"});
  const auto full = ShardingOptions().strategy(ShardingStrategy::full_shard);
  EXPECT_NO_THROW(check_sharding_options(ShardingOptions(full).offload_param(cpu)));
  const auto nvme = OffloadOptions().device(OffloadDevice::nvme);
  EXPECT_NO_THROW(check_sharding_options(ShardingOptions(full).offload_param(OffloadOptions(nvme).nvme_path("/n"))));
  EXPECT_NO_THROW(
      check_sharding_options(ShardingOptions(full).offload_param(OffloadOptions(nvme).nvme_path("/n").max_in_cpu(0))));
  expect_error<std::invalid_argument>([&] { check_sharding_options(ShardingOptions(full).offload_param(nvme)); },
                                      {"offload_param.device is nvme", "offload_param.nvme_path is empty"});
  expect_error<std::invalid_argument>(
      [&] { check_sharding_options(ShardingOptions().offload_param(OffloadOptions(nvme).nvme_path("/n"))); },
      {"offload_param.device is nvme", "shard_grad_op", "full_shard or hybrid_shard"});
  expect_error<std::invalid_argument>(
      [&] {
        check_sharding_options(
            ShardingOptions(full).offload_param(OffloadOptions(nvme).nvme_path("/n").max_in_cpu(-1)));
      },
      {"offload_param.max_in_cpu is -1", ">= 0"});
  // max_in_cpu splits shards between memory and files: nothing to split elsewhere.
  expect_error<std::invalid_argument>(
      [&] { check_sharding_options(ShardingOptions(full).offload_param(OffloadOptions(cpu).max_in_cpu(10))); },
      {"offload_param.max_in_cpu is 10", "offload_param.device cpu"});
  expect_error<std::invalid_argument>(
      [&] { check_sharding_options(ShardingOptions(full).offload_optimizer(OffloadOptions(cpu).max_in_cpu(10))); },
      {"offload_optimizer.max_in_cpu is 10", "offload_param's"});
  expect_error<std::invalid_argument>(
      [&] {
        check_sharding_options(ShardingOptions(full).offload_optimizer(OffloadOptions(cpu).delayed_update(true)));
      },
      {"delayed_update", "full_shard"});
  expect_error<std::invalid_argument>([] { parse_sharding_strategy("stage2"); }, {"stage2", "shard_grad_op"});
  expect_error<std::invalid_argument>([] { parse_offload_device("disk"); }, {"disk", "nvme"});
  EXPECT_EQ(parse_sharding_strategy("shard_optimizer"), ShardingStrategy::shard_optimizer);
  EXPECT_EQ(to_string(ShardingStrategy::no_shard), "no_shard");
  EXPECT_EQ(parse_offload_device("cpu"), OffloadDevice::cpu);
  // The Accelerator checks what it is given.
  expect_error<std::invalid_argument>(
      [] { resolve(AcceleratorOptions().sharding(ShardingOptions().reduce_bucket_size(-5))); },
      {"reduce_bucket_size", "-5"});
}

TEST(FlatLayout, PadsEachGroupToTheWorldSize) {
  const auto layout = FlatLayout::build(two_groups(), 3, ShardingStrategy::shard_optimizer);
  ASSERT_EQ(layout.groups.size(), 2u);
  const auto& g0 = layout.groups[0];
  EXPECT_EQ(g0.params[0].offset, 0);
  EXPECT_EQ(g0.params[0].numel, 12);
  EXPECT_EQ(g0.params[1].offset, 12);
  EXPECT_EQ(g0.padded_numel, 18);  // 16 -> 18
  EXPECT_EQ(layout.slice_numel(0), 6);
  EXPECT_EQ(layout.rank_range(0, 2), (std::pair<int64_t, int64_t>{12, 18}));
  EXPECT_EQ(layout.groups[1].padded_numel, 6);
  EXPECT_EQ(layout.groups[1].params[0].dtype, torch::kBFloat16);
  // An empty group still gives each rank one element.
  EXPECT_EQ(FlatLayout::build({{}}, 4, ShardingStrategy::shard_grad_op).groups[0].padded_numel, 4);
  expect_error<std::invalid_argument>(
      [] {
        FlatLayout::build({{{"steps", torch::zeros({2}, torch::kLong)}}}, 2, ShardingStrategy::no_shard);
      },
      {"steps", "floating"});
  expect_error<std::invalid_argument>([] { FlatLayout::build({}, 0, ShardingStrategy::no_shard); },
                                      {"world_size", "0"});
}

TEST(FlatLayout, JsonRoundTripsAndMatchesTheSpec) {
  const auto layout = FlatLayout::build(two_groups(), 2, ShardingStrategy::shard_grad_op);
  const auto text = layout.to_json();
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["format"], "accel-zero-v1");
  EXPECT_EQ(j["world_size"], 2);
  EXPECT_EQ(j["strategy"], "shard_grad_op");
  EXPECT_EQ(j["groups"][0]["params"][0],
            nlohmann::json::parse(R"({"name":"a.weight","shape":[4,3],"dtype":"F32","offset":0,"numel":12})"));
  EXPECT_EQ(j["groups"][1]["params"][0]["dtype"], "BF16");
  EXPECT_EQ(FlatLayout::from_json(text, "test"), layout);
  std::string why;
  auto other = FlatLayout::build(two_groups(), 4, ShardingStrategy::no_shard);
  EXPECT_TRUE(layout.same_parameters(other));
  other.groups[0].params[1].shape = {2, 2};
  EXPECT_FALSE(layout.same_parameters(other, &why));
  EXPECT_NE(why.find("a.bias"), std::string::npos) << why;
}

TEST(FlatLayout, MalformedJsonIsRefusedNamingTheSource) {
  auto expect_runtime = [](const std::string& text, const std::string& word) {
    SCOPED_TRACE(text);
    expect_error<std::runtime_error>([&] { FlatLayout::from_json(text, "'x/zero_layout.json'"); },
                                     {"x/zero_layout.json", word});
  };
  expect_runtime("{", "not valid JSON");
  expect_runtime(R"({"format":"other"})", "accel-zero-v1");
  expect_runtime(R"({"format":"accel-zero-v1","world_size":2,"strategy":"zero9","groups":[]})", "zero9");
  expect_runtime(R"({"format":"accel-zero-v1","world_size":2,"strategy":"no_shard","groups":[{"padded_numel":3,
     "params":[{"name":"w","shape":[3],"dtype":"F32","offset":0,"numel":3}]}]})",
                 "multiple");
  expect_runtime(R"({"format":"accel-zero-v1","world_size":1,"strategy":"no_shard","groups":[{"padded_numel":4,
     "params":[{"name":"w","shape":[3],"dtype":"F32","offset":0,"numel":4}]}]})",
                 "'w'");
  // JSON reads 0 as an unsigned number: the lower bound holds for it too
  // (the zero_layout fuzzer found world_size 0 reaching a division).
  expect_runtime(R"({"format":"accel-zero-v1","world_size":0,"strategy":"no_shard","groups":[{"padded_numel":4,
     "params":[{"name":"w","shape":[4],"dtype":"F32","offset":0,"numel":4}]}]})",
                 "world_size is 0, expected an integer from 1");
}
