// Device maps (big_model/device_map.h, auto_device_map.h): Accelerate's
// spellings, the checks, and the refusals. The maps themselves are checked
// against Accelerate's in tests/peer/device_map_peer_test.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/big_model/auto_device_map.h"
#include "accel/big_model/device_map.h"
#include "accel/big_model/empty_init.h"
#include "support/device_map_model.h"
#include "support/errors.h"

namespace {

using accel::testing::expect_error;

TEST(DeviceMap, MemorySizesAsAccelerateReadsThem) {
  // The values convert_file_size_to_int gives for the same strings.
  const std::vector<std::pair<std::string, int64_t>> sizes = {
      {"10GiB", 10737418240}, {"500MB", 500000000}, {"1.5GB", 1500000000}, {"8Gb", 1000000000},
      {"100KiB", 102400},     {"2.5mib", 2621440},  {" 3 KB", 3000},       {"1e3MB", 1000000000},
      {"0.7MB", 700000},      {"0.25MiB", 262144},  {"3Mb", 375000},       {"300KiB", 307200}};
  for (const auto& [text, bytes] : sizes) EXPECT_EQ(accel::parse_memory_size(text), bytes) << text;
  EXPECT_EQ(accel::MemorySize(12345).bytes(), 12345);
  EXPECT_EQ(accel::MemorySize("1KiB").bytes(), 1024);
  for (const char* bad : {"1000", "GB", "ten GB", "1.2.3GB", "-1GB", "nanGB", "5 TB"})
    expect_error<std::invalid_argument>([&] { accel::parse_memory_size(bad); }, {std::string("'") + bad + "'"});
  expect_error<std::invalid_argument>([] { accel::MemorySize(int64_t{-5}); }, {"-5 bytes"});
}

TEST(DeviceMap, DevicesAndBudgetsInAccelerateOrder) {
  EXPECT_EQ(accel::map_device("0"), "cuda:0");
  EXPECT_EQ(accel::map_device("cuda"), "cuda:0");
  EXPECT_EQ(accel::map_device("cuda:3"), "cuda:3");
  EXPECT_EQ(accel::map_device("disk"), "disk");
  expect_error<std::invalid_argument>([] { accel::map_device("gpu0"); }, {"'gpu0'", "cuda:N"});
  expect_error<std::invalid_argument>([] { accel::map_device("mps"); }, {"'mps'"});

  const auto budgets = accel::resolve_max_memory({{"disk", "1GB"}, {"cpu", 100}, {"1", 20}, {"cuda:0", "1KB"}});
  const std::vector<std::pair<std::string, int64_t>> want = {
      {"cuda:0", 1000}, {"cuda:1", 20}, {"cpu", 100}, {"disk", 1000000000}};
  EXPECT_EQ(budgets, want);
  expect_error<std::invalid_argument>(
      [] {
        accel::resolve_max_memory({{"0", 1}, {"cuda:0", 2}});
      },
      {"cuda:0 is given twice"});
  expect_error<std::invalid_argument>([] { accel::resolve_max_memory({{"npu", 1}}); }, {"'npu'"});
  // Nothing given: the host's available memory (and each GPU's free memory).
  const auto found = accel::resolve_max_memory({});
  ASSERT_FALSE(found.empty());
  EXPECT_EQ(found.back().first, "cpu");
  EXPECT_GT(found.back().second, 0);
}

TEST(DeviceMap, TiedParametersAndSizes) {
  auto model = accel::init_empty_weights([] { return accel::testing::MapLM(1000, 64, 128, 2); });
  const std::vector<std::vector<std::string>> tied = {{"lm_head.decoder.weight", "transformer.wte.weight"}};
  EXPECT_EQ(accel::find_tied_parameters(*model), tied);

  const auto sizes = accel::compute_module_sizes(*model);
  EXPECT_EQ(sizes.at("transformer.wte"), 1000 * 64 * 4);
  EXPECT_EQ(sizes.at("transformer.h.0.attn.mask"), 128 * 128 / 8.0);  // bool: 1/8 byte
  EXPECT_EQ(sizes.at("position_ids"), 128 * 8);
  // The tied weight is counted once, under its first name.
  EXPECT_EQ(sizes.count("lm_head.decoder.weight"), 0u);
  EXPECT_EQ(sizes.at("lm_head"), 64 * 64 * 4 + 64 * 4);
  double total = 0;
  for (const auto& n : {"scale", "transformer", "lm_head", "position_ids"}) total += sizes.at(n);
  EXPECT_EQ(sizes.at(""), total);
  // In half precision floats halve; bool and int64 keep their size.
  const auto half = accel::compute_module_sizes(*model, torch::kHalf);
  EXPECT_EQ(half.at("transformer.wte"), 1000 * 64 * 2);
  EXPECT_EQ(half.at("transformer.h.0.attn.mask"), 128 * 128 / 8.0);
  EXPECT_EQ(half.at("position_ids"), 128 * 8);
}

TEST(DeviceMap, CleanMergesWhatEndsOnOneDevice) {
  const accel::DeviceMap map = {{"a.x", "cuda:0"}, {"a.y.p", "cuda:0"}, {"a.y.q", "cuda:0"},
                                {"b.x", "cpu"},    {"b.y", "disk"},     {"c", "cpu"}};
  const accel::DeviceMap want = {{"a", "cuda:0"}, {"b.x", "cpu"}, {"b.y", "disk"}, {"c", "cpu"}};
  EXPECT_EQ(accel::clean_device_map(map), want);
  EXPECT_EQ(accel::clean_device_map({{"a", "cpu"}, {"b.c", "cpu"}}), (accel::DeviceMap{{"", "cpu"}}));
}

TEST(DeviceMap, CheckNamesWhatIsWrong) {
  auto model = accel::init_empty_weights([] { return accel::testing::MapLM(1000, 64, 128, 2); });
  EXPECT_EQ(accel::check_device_map(*model, {{"", "0"}}), (accel::DeviceMap{{"", "cuda:0"}}));
  expect_error<std::invalid_argument>(
      [&] {
        accel::check_device_map(*model, {{"", "cpu"}, {"transformer.h.7", "cpu"}});
      },
      {"'transformer.h.7'", "neither a module nor a tensor"});
  expect_error<std::invalid_argument>([&] { accel::check_device_map(*model, {{"", "gpu"}}); }, {"'gpu'"});
  expect_error<std::invalid_argument>(
      [&] {
        accel::check_device_map(*model, {{"transformer", "cpu"}, {"lm_head.proj", "disk"}, {"scale", "cpu"}});
      },
      {"no device for", "lm_head.decoder.weight", "position_ids"});
  const accel::DeviceMap map = {{"transformer", "cuda:0"}, {"transformer.h.1", "cpu"}, {"", "disk"}};
  EXPECT_EQ(accel::device_for(map, "transformer.h.1.mlp.c_fc.weight"), "cpu");
  EXPECT_EQ(accel::device_for(map, "transformer.h.0.ln_1.bias"), "cuda:0");
  EXPECT_EQ(accel::device_for(map, "lm_head.proj.weight"), "disk");
  expect_error<std::invalid_argument>([] { accel::device_for({{"a", "cpu"}}, "b.c"); }, {"'b.c'"});
}

TEST(DeviceMap, InferRefusesBadInputByName) {
  auto model = accel::init_empty_weights([] { return accel::testing::MapLM(1000, 64, 128, 2); });
  // A no-split class the model does not have.
  expect_error<std::invalid_argument>(
      [&] {
        accel::infer_auto_device_map(
            *model, accel::DeviceMapOptions().max_memory({{"cpu", "1GB"}}).no_split_module_classes({"GPT2Blok"}));
      },
      {"'GPT2Blok'", "GPT2Block"});
  // Budgets too small for the largest layer that cannot be split: the
  // token embedding (256000 bytes) here.
  expect_error<std::invalid_argument>(
      [&] {
        accel::infer_auto_device_map(*model, accel::DeviceMapOptions()
                                                 .max_memory({{"0", 200'000}, {"cpu", 100'000}})
                                                 .no_split_module_classes({"GPT2Block"}));
      },
      {"cuda:0 200000 bytes", "cpu 100000 bytes", "'transformer.wte'", "256000 bytes"});
  // Enough on one of them: a map.
  const auto map = accel::infer_auto_device_map(*model, accel::DeviceMapOptions()
                                                            .max_memory({{"0", 200'000}, {"cpu", 10'000'000}})
                                                            .no_split_module_classes({"GPT2Block"}));
  EXPECT_EQ(map, (accel::DeviceMap{{"", "cpu"}}));
}

}  // namespace
