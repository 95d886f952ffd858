// merge-weights: a sharded (ZeRO) checkpoint written here by hand
// (zero_layout.json + zero_shard_rank<r>.safetensors, the spec's layout:
// groups laid end to end, padded to a multiple of the world size, each rank
// holding its fp32 slice) merges back into the original tensors (shapes,
// names, fp32/bf16/fp16 dtypes; one file and sharded with an index); the
// errors name missing ranks, extra ranks, missing slices and wrong sizes;
// --remove_checkpoint_dir removes the folder only after the merge, and
// refuses an output inside it; the `accel merge-weights` command does the
// same end to end, and Python's safetensors reads its output.
#include "accel/checkpoint/merge_weights.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "accel/checkpoint/safetensors.h"
#include "accel_test_paths.h"
#include "support/errors.h"
#include "support/peers.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::safetensors::NamedTensors;
using accel::testing::expect_error;
using accel::testing::TempDir;

std::string dtype_name(torch::ScalarType t) {
  return t == torch::kFloat ? "F32" : t == torch::kBFloat16 ? "BF16" : "F16";
}

// The model: two optimizer groups; sizes chosen so that padding is needed.
std::vector<NamedTensors> model_groups() {
  auto g = at::detail::createCPUGenerator(3);
  return {
      {{"fc1.weight", torch::randn({4, 3}, g)},
       {"fc1.bias", torch::randn({4}, g)},
       {"emb.weight", torch::randn({5, 2}, g).to(torch::kBFloat16)}},
      {{"head.weight", torch::randn({3, 3}, g).to(torch::kHalf)}, {"head.scale", torch::randn({1}, g)}},
  };
}

// Writes the sharded form of `groups` for `world` ranks, as the engine does.
void write_sharded(const fs::path& dir, const std::vector<NamedTensors>& groups, int world) {
  nlohmann::json layout = {{"format", "accel-zero-v1"}, {"world_size", world}, {"strategy", "shard_grad_op"}};
  std::vector<torch::Tensor> flats;
  for (const auto& group : groups) {
    nlohmann::json params = nlohmann::json::array();
    std::vector<torch::Tensor> parts;
    int64_t offset = 0;
    for (const auto& [name, t] : group) {
      params.push_back({{"name", name},
                        {"shape", t.sizes().vec()},
                        {"dtype", dtype_name(t.scalar_type())},
                        {"offset", offset},
                        {"numel", t.numel()}});
      parts.push_back(t.to(torch::kFloat).reshape({-1}));
      offset += t.numel();
    }
    const int64_t padded = (offset + world - 1) / world * world;
    parts.push_back(torch::full({padded - offset}, 12345.0f));  // padding: never part of a parameter
    flats.push_back(torch::cat(parts));
    layout["groups"].push_back({{"padded_numel", padded}, {"params", params}});
  }
  std::ofstream(dir / "zero_layout.json") << layout.dump(2);
  for (int r = 0; r < world; ++r) {
    NamedTensors shard;
    accel::safetensors::Metadata meta;
    for (size_t g = 0; g < flats.size(); ++g) {
      const int64_t s = flats[g].numel() / world;
      shard.emplace_back("group." + std::to_string(g) + ".param", flats[g].narrow(0, r * s, s).clone());
      shard.emplace_back("group." + std::to_string(g) + ".state.exp_avg", torch::zeros({s}));
      meta["step." + std::to_string(g)] = "7";
    }
    accel::safetensors::save_file(shard, dir / ("zero_shard_rank" + std::to_string(r) + ".safetensors"), meta);
  }
}

void expect_merged_equals(const fs::path& out_dir, const std::vector<NamedTensors>& groups) {
  auto merged = accel::load_checkpoint(out_dir);
  size_t count = 0;
  for (const auto& group : groups)
    for (const auto& [name, t] : group) {
      ++count;
      ASSERT_TRUE(merged.contains(name)) << name;
      EXPECT_EQ(merged[name].scalar_type(), t.scalar_type()) << name;
      EXPECT_TRUE(torch::equal(merged[name], t)) << name;
    }
  EXPECT_EQ(merged.size(), count);
}

TEST(MergeWeights, MergesAnyWorldSizeBackIntoTheModel) {
  const auto groups = model_groups();
  for (int world : {1, 2, 3, 4}) {
    SCOPED_TRACE("world " + std::to_string(world));
    TempDir dir("merge");
    fs::create_directories(dir / "ckpt");
    write_sharded(dir / "ckpt", groups, world);
    auto saved = accel::merge_weights(dir / "ckpt", dir / "out");
    EXPECT_FALSE(saved.sharded());
    EXPECT_TRUE(fs::exists(dir / "out" / "model.safetensors"));
    expect_merged_equals(dir / "out", groups);
    EXPECT_TRUE(fs::exists(dir / "ckpt" / "zero_layout.json"));  // kept without remove_checkpoint_dir
  }
}

TEST(MergeWeights, ShardsTheOutputPastTheSizeLimitAndRemovesTheCheckpoint) {
  TempDir dir("merge");
  const auto groups = model_groups();
  fs::create_directories(dir / "ckpt");
  write_sharded(dir / "ckpt", groups, 2);
  auto saved = accel::merge_weights(dir / "ckpt", dir / "out", accel::SaveModelOptions().max_shard_size(int64_t{40}),
                                    /*remove=*/true);
  EXPECT_TRUE(saved.sharded());
  EXPECT_GT(saved.files.size(), 1u);
  EXPECT_TRUE(fs::exists(dir / "out" / "model.safetensors.index.json"));
  expect_merged_equals(dir / "out", groups);
  EXPECT_FALSE(fs::exists(dir / "ckpt"));
}

TEST(MergeWeights, ErrorsNameWhatIsWrong) {
  TempDir dir("merge");
  const auto groups = model_groups();
  const fs::path ckpt = dir / "ckpt";
  fs::create_directories(ckpt);
  expect_error([&] { accel::merged_zero_weights(ckpt); }, {"no zero_layout.json", ckpt.string()});
  write_sharded(ckpt, groups, 4);

  fs::rename(ckpt / "zero_shard_rank1.safetensors", dir / "r1");
  fs::rename(ckpt / "zero_shard_rank3.safetensors", dir / "r3");
  expect_error([&] { accel::merged_zero_weights(ckpt); }, {"world_size is 4", "rank(s) 1, 3 are missing"});
  fs::rename(dir / "r1", ckpt / "zero_shard_rank1.safetensors");
  fs::rename(dir / "r3", ckpt / "zero_shard_rank3.safetensors");

  fs::copy_file(ckpt / "zero_shard_rank0.safetensors", ckpt / "zero_shard_rank5.safetensors");
  expect_error([&] { accel::merged_zero_weights(ckpt); }, {"zero_shard_rank5.safetensors", "other ranks"});
  fs::remove(ckpt / "zero_shard_rank5.safetensors");

  // A slice of the wrong size, and a missing slice, name the file and tensor.
  accel::safetensors::save_file(
      NamedTensors{{"group.0.param", torch::zeros({3})}, {"group.1.param", torch::zeros({3})}},
      ckpt / "zero_shard_rank2.safetensors");
  expect_error([&] { accel::merged_zero_weights(ckpt); },
               {"zero_shard_rank2.safetensors", "group.0.param is Float [3], expected Float [7]"});
  accel::safetensors::save_file(NamedTensors{{"group.0.param", torch::zeros({7})}},
                                ckpt / "zero_shard_rank2.safetensors");
  expect_error([&] { accel::merged_zero_weights(ckpt); }, {"zero_shard_rank2.safetensors", "no tensor group.1.param"});

  // Bad layout entries.
  auto layout = nlohmann::json::parse(std::ifstream(ckpt / "zero_layout.json"));
  auto broken = layout;
  broken["groups"][0]["params"][1]["numel"] = 5;
  std::ofstream(ckpt / "zero_layout.json") << broken.dump();
  expect_error([&] { accel::merged_zero_weights(ckpt); }, {"groups[0].params[1].numel = 5", "shape [4] has 4"});
  broken = layout;
  broken["groups"][1]["padded_numel"] = 9;
  std::ofstream(ckpt / "zero_layout.json") << broken.dump();
  expect_error([&] { accel::merged_zero_weights(ckpt); }, {"padded_numel = 9", "multiple of world_size 4"});
  broken = layout;
  broken["format"] = "deepspeed";
  std::ofstream(ckpt / "zero_layout.json") << broken.dump();
  expect_error([&] { accel::merged_zero_weights(ckpt); }, {"format = \"deepspeed\"", "accel-zero-v1"});

  // An output inside the checkpoint is refused when the checkpoint would be removed.
  std::ofstream(ckpt / "zero_layout.json") << layout.dump();
  expect_error([&] { accel::merge_weights(ckpt, ckpt / "merged", {}, true); }, {"lies inside the checkpoint"});
  EXPECT_TRUE(fs::exists(ckpt / "zero_layout.json"));
}

int run(const std::string& command) { return std::system(command.c_str()); }

TEST(MergeWeights, CommandLineAndPythonsSafetensorsReadTheResult) {
  TempDir dir("merge");
  const auto groups = model_groups();
  fs::create_directories(dir / "ckpt");
  write_sharded(dir / "ckpt", groups, 3);
  const std::string accel_bin = std::string(ACCEL_BINARY_DIR) + "/accel";
  if (!fs::exists(accel_bin)) GTEST_SKIP() << "build the accel command first (" << accel_bin << ")";
  ASSERT_EQ(run(accel_bin + " merge-weights " + (dir / "ckpt").string() + " " + (dir / "out").string() +
                " --remove_checkpoint_dir > " + (dir / "log").string()),
            0);
  expect_merged_equals(dir / "out", groups);
  EXPECT_FALSE(fs::exists(dir / "ckpt"));
  // A missing checkpoint: exit status 2 and the folder named.
  EXPECT_NE(run(accel_bin + " merge-weights " + (dir / "nothing").string() + " " + (dir / "o2").string() + " 2> " +
                (dir / "err").string()),
            0);
  std::ifstream err(dir / "err");
  std::string text((std::istreambuf_iterator<char>(err)), {});
  EXPECT_NE(text.find((dir / "nothing").string()), std::string::npos) << text;

  REQUIRE_PEERS("torch", "safetensors");
  const std::string python = ACCEL_PYTHON;
  // Python reads the merged file: names, dtypes and values (summed per tensor) as written.
  std::ofstream(dir / "check.py") << R"(import sys
from safetensors.torch import load_file
t = load_file(sys.argv[1])
for k in sorted(t):
    print(k, str(t[k].dtype).replace("torch.", ""), list(t[k].shape), float(t[k].float().sum()))
)";
  ASSERT_EQ(run(python + " " + (dir / "check.py").string() + " " + (dir / "out" / "model.safetensors").string() +
                " > " + (dir / "py.txt").string()),
            0);
  std::ifstream py(dir / "py.txt");
  std::map<std::string, std::string> lines;
  for (std::string name, rest; py >> name && std::getline(py, rest);) lines[name] = rest;
  for (const auto& group : groups)
    for (const auto& [name, t] : group) {
      ASSERT_TRUE(lines.count(name)) << name;
      const std::string dtype = t.scalar_type() == torch::kFloat      ? "float32"
                                : t.scalar_type() == torch::kBFloat16 ? "bfloat16"
                                                                      : "float16";
      EXPECT_NE(lines[name].find(dtype), std::string::npos) << name << ": " << lines[name];
      const double sum = std::stod(lines[name].substr(lines[name].rfind(' ')));
      EXPECT_NEAR(sum, t.to(torch::kFloat).sum().item<double>(), 1e-4) << name;
    }
}

}  // namespace
