// Issue 20, merge-weights against a hostile zero_layout.json: the work is
// bounded by the rank files that exist, not by the world_size the layout
// claims (10,000,000 ranks took 54 s and 954 MB to print an 89 MB error);
// parameters that overlap in a group's buffer, element counts and offsets
// that overflow int64, and shard file names of any length are refused with
// short messages naming the file and the value, never a stack trace.
#include <chrono>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/checkpoint/merge_weights.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/parallel/zero/flat_layout.h"
#include "support/errors.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::testing::error_of;
using accel::testing::expect_error;
using accel::testing::TempDir;
using nlohmann::json;

class MergeHostile : public ::testing::Test {
 protected:
  // A valid two-rank checkpoint of one group: a [2, 3] and a [2] parameter.
  json layout() {
    return {{"format", "accel-zero-v1"},
            {"world_size", 2},
            {"strategy", "shard_grad_op"},
            {"groups",
             {{{"padded_numel", 8},
               {"params",
                {{{"name", "w"}, {"shape", {2, 3}}, {"dtype", "F32"}, {"offset", 0}, {"numel", 6}},
                 {{"name", "b"}, {"shape", {2}}, {"dtype", "F32"}, {"offset", 6}, {"numel", 2}}}}}}}};
  }
  void write(const json& l, int ranks = 2) {
    std::ofstream(dir_ / "zero_layout.json") << l.dump();
    for (int r = 0; r < ranks; ++r)
      accel::safetensors::save_file({{"group.0.param", torch::arange(4 * r, 4 * r + 4, torch::kFloat)}},
                                    dir_ / ("zero_shard_rank" + std::to_string(r) + ".safetensors"));
  }
  // The message with which the merge refuses the folder.
  std::string refusal() {
    return error_of([&] { accel::merged_zero_weights(dir_); });
  }
  TempDir dir_{"merge_hostile"};
};

TEST_F(MergeHostile, TheValidCheckpointMerges) {
  write(layout());
  const auto merged = accel::merged_zero_weights(dir_);
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_TRUE(torch::equal(merged[1].second, torch::tensor({6.0f, 7.0f})));
}

TEST_F(MergeHostile, WorldSizeIsBoundedByTheRankFilesThatExist) {
  for (const int64_t world : {int64_t{10'000'000}, int64_t{2147483650}, int64_t{4611686018427387904}}) {
    auto l = layout();
    l["world_size"] = world;
    l["groups"][0]["padded_numel"] = world;  // a multiple of world_size, as required
    write(l);
    const auto t0 = std::chrono::steady_clock::now();
    const std::string m = refusal();
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
    EXPECT_NE(m.find("world_size is " + std::to_string(world)), std::string::npos) << m;
    EXPECT_NE(m.find("rank(s) 2, 3, 4"), std::string::npos) << m;
    EXPECT_NE(m.find("(" + std::to_string(world - 2) + " in all)"), std::string::npos) << m;
    EXPECT_NE(m.find("2 found"), std::string::npos) << m;
    EXPECT_LT(m.size(), 600u) << m;
  }
}

TEST_F(MergeHostile, OverlappingParametersAreRefused) {
  auto l = layout();
  l["groups"][0]["params"][1]["offset"] = 5;  // b starts inside w
  l["groups"][0]["padded_numel"] = 8;
  write(l);
  const std::string m = refusal();
  EXPECT_NE(m.find("\"w\" (elements 0..6) and \"b\" (elements 5..7) overlap"), std::string::npos) << m;
  // Also when listed the other way round, and for an exact duplicate range.
  auto swapped = layout();
  swapped["groups"][0]["params"][0]["offset"] = 1;  // w: elements 1..7, b: 0..2
  swapped["groups"][0]["params"][1]["offset"] = 0;
  write(swapped);
  EXPECT_NE(refusal().find("overlap"), std::string::npos);
  auto same = layout();
  same["groups"][0]["params"][1] = {{"name", "c"}, {"shape", {6}}, {"dtype", "F32"}, {"offset", 0}, {"numel", 6}};
  write(same);
  EXPECT_NE(refusal().find("overlap"), std::string::npos);
}

TEST_F(MergeHostile, OverflowingCountsAndOffsetsAreRefusedByValue) {
  auto shape = layout();
  shape["groups"][0]["params"][0]["shape"] = {0, int64_t{1} << 62, int64_t{1} << 62};
  write(shape);
  std::string m = refusal();
  EXPECT_NE(m.find("element count overflows int64"), std::string::npos) << m;
  EXPECT_EQ(m.find("Exception raised from"), std::string::npos) << m;
  // load_state's reader of the same file refuses it too.
  expect_error<std::runtime_error>([&] { accel::zero::FlatLayout::from_json(shape.dump(), "'zero_layout.json'"); },
                                   {"element count overflows int64"});

  auto offset = layout();
  offset["groups"][0]["params"][1]["offset"] = INT64_MAX - 1;  // offset + numel wraps around
  write(offset);
  m = refusal();
  EXPECT_NE(m.find("at offset 9223372036854775806 with 2 elements ends past the group's padded_numel 8"),
            std::string::npos)
      << m;

  auto huge = layout();
  huge["groups"][0]["params"][0]["shape"] = {uint64_t{18446744073709551615u}};
  write(huge);
  EXPECT_NE(refusal().find("expected sizes >= 0"), std::string::npos);
}

TEST_F(MergeHostile, ShardFileNamesOfAnyLengthAreHandled) {
  write(layout());
  // A rank number past int64 (std::stoll threw "stoll" here; a file name
  // holds at most 255 bytes), and a name with leading zeros: neither is a
  // rank file save_state writes.
  const std::string digits(200, '9');
  std::ofstream(dir_ / ("zero_shard_rank" + digits + ".safetensors")) << "x";
  std::string m = refusal();
  EXPECT_NE(m.find("shard files of other ranks"), std::string::npos) << m;
  EXPECT_EQ(m.find("stoll"), std::string::npos) << m;
  EXPECT_LT(m.size(), 600u);
  fs::remove(dir_ / ("zero_shard_rank" + digits + ".safetensors"));
  std::ofstream(dir_ / "zero_shard_rank01.safetensors") << "x";
  EXPECT_NE(refusal().find("zero_shard_rank01.safetensors"), std::string::npos);
}

}  // namespace

// Found by the zero_layout fuzzer: "format" of another JSON type than a
// string escaped as nlohmann's type_error (std::terminate in the fuzzer).
TEST_F(MergeHostile, FieldsOfAnotherJsonTypeAreRefusedByName) {
  for (const json& format : {json(1), json::array({"accel-zero-v1"}), json(nullptr), json::object()}) {
    SCOPED_TRACE(format.dump());
    auto l = layout();
    l["format"] = format;
    write(l);
    const std::string m = refusal();
    EXPECT_NE(m.find("format = " + format.dump()), std::string::npos) << m;
    expect_error<std::runtime_error>([&] { accel::zero::FlatLayout::from_json(l.dump(), "'zero_layout.json'"); },
                                     {"not an accel ZeRO layout"});
  }
}
