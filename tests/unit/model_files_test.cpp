// save_model / load_model_weights: Hugging Face's layout, shard sizes, the
// index, tied weights, and loads that refuse a checkpoint that does not fit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/model_files.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/temp_dir.h"

namespace st = accel::safetensors;
using accel::LoadModelOptions;
using accel::SaveModelOptions;
using accel::testing::expect_error;
using accel::testing::read_file;
using accel::testing::TempDir;

namespace {

std::vector<std::string> dir_names(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct Block : torch::nn::Module {
  explicit Block(int64_t d) {
    fc = register_module("fc", torch::nn::Linear(d, d));
    running = register_buffer("running", torch::randn({d}));
  }
  torch::nn::Linear fc{nullptr};
  torch::Tensor running;
};

struct Embedding : torch::nn::Module {
  Embedding(int64_t v, int64_t d) { weight = register_parameter("weight", torch::randn({v, d})); }
  torch::Tensor weight;
};

// Registers a given tensor: the output projection tied to the embedding.
struct Head : torch::nn::Module {
  explicit Head(torch::Tensor w) { weight = register_parameter("weight", std::move(w)); }
  torch::Tensor weight;
};

// Own parameter and buffer first, then children, as Python's state_dict.
struct Net : torch::nn::Module {
  explicit Net(int64_t d = 4, int64_t v = 6, bool extra = false) {
    scale = register_parameter("scale", torch::ones({1}));
    steps = register_buffer("steps", torch::zeros({}, torch::kInt64));
    emb = register_module("emb", std::make_shared<Embedding>(v, d));
    layers = register_module("layers", torch::nn::ModuleList(std::make_shared<Block>(d), std::make_shared<Block>(d)));
    head = register_module("head", std::make_shared<Head>(emb->weight));
    if (extra) register_module("extra", torch::nn::Linear(d, 1));
  }
  torch::Tensor scale, steps;
  std::shared_ptr<Embedding> emb;
  torch::nn::ModuleList layers{nullptr};
  std::shared_ptr<Head> head;
};

class ModelFiles : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(3); }
  TempDir dir_{"model_files"};
};

TEST(ParseSize, AccelerateUnits) {
  EXPECT_EQ(accel::parse_size("10GB"), 10'000'000'000);
  EXPECT_EQ(accel::parse_size("10GiB"), int64_t{10} << 30);
  EXPECT_EQ(accel::parse_size("5MB"), 5'000'000);
  EXPECT_EQ(accel::parse_size("1.5kb"), 187);  // lowercase b: bits, as Accelerate
  EXPECT_EQ(accel::parse_size("5Gb"), 625'000'000);
  EXPECT_EQ(accel::parse_size(" 2 KiB "), 2048);
  EXPECT_EQ(accel::parse_size("3tb"), 375'000'000'000);
  EXPECT_EQ(accel::parse_size("1TB"), 1'000'000'000'000);
  EXPECT_EQ(accel::parse_size("1234"), 1234);
  for (const char* bad : {"", "GB", "10XB", "-1GB", "ten GB", "1e400GB", "nanGB"}) {
    EXPECT_THROW(accel::parse_size(bad), std::invalid_argument) << bad;
  }
  EXPECT_THROW(SaveModelOptions().max_shard_size(int64_t{-1}), std::invalid_argument);
}

TEST_F(ModelFiles, StateFollowsPythonsStateDictOrder) {
  Net net;
  std::vector<std::string> names;
  for (const auto& [name, t] : accel::model_state(net)) names.push_back(name);
  // A module's own buffers come before its children's tensors.
  EXPECT_EQ(names, (std::vector<std::string>{"scale", "steps", "emb.weight", "layers.0.running", "layers.0.fc.weight",
                                             "layers.0.fc.bias", "layers.1.running", "layers.1.fc.weight",
                                             "layers.1.fc.bias", "head.weight"}));
}

TEST_F(ModelFiles, SingleFileSaveAndLoadWithTiedWeights) {
  Net a, b;
  auto saved = accel::save_model(a, dir_);
  EXPECT_FALSE(saved.sharded());
  EXPECT_EQ(saved.files, std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(saved.removed_tied, std::vector<std::string>{"head.weight"});
  EXPECT_EQ(dir_names(dir_), std::vector<std::string>{"model.safetensors"});
  st::File file(dir_ / "model.safetensors");
  EXPECT_FALSE(file.contains("head.weight"));
  EXPECT_EQ(file.metadata(), (st::Metadata{{"format", "pt"}}));

  auto report = accel::load_model_weights(b, dir_);
  EXPECT_TRUE(report.ok()) << report.describe();
  auto sa = accel::model_state(a), sb = accel::model_state(b);
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
  // Still tied after loading.
  EXPECT_EQ(b.head->weight.data_ptr(), b.emb->weight.data_ptr());
}

TEST_F(ModelFiles, ShardsStayUnderTheLimitAndTheIndexIsHuggingFaces) {
  st::NamedTensors tensors;
  for (int i = 0; i < 7; ++i) tensors.emplace_back("layer." + std::to_string(i), torch::randn({100}));  // 400 B
  tensors.emplace_back("big", torch::randn({500}));                                                     // 2000 B
  tensors.emplace_back("tail", torch::randn({10}, torch::kFloat64));                                    // 80 B
  auto saved = accel::save_model(tensors, dir_, SaveModelOptions().max_shard_size("1KB"));
  ASSERT_TRUE(saved.sharded());
  // huggingface_hub's greedy split: [0,1] [2,3] [4,5] [big] [6,tail]: big
  // exceeds the limit and gets its own shard at once, while the open shard
  // (6) stays open for what follows.
  ASSERT_EQ(saved.files.size(), 5u);
  EXPECT_EQ(saved.files[0], "model-00001-of-00005.safetensors");
  EXPECT_EQ(saved.index_file, "model.safetensors.index.json");
  EXPECT_EQ(saved.total_size, 7 * 400 + 2000 + 80);

  int64_t sum = 0;
  for (const auto& name : saved.files) {
    st::File shard(dir_ / name);
    auto size = static_cast<int64_t>(shard.header().data_size());
    sum += size;
    if (shard.keys() != std::vector<std::string>{"big"}) {
      EXPECT_LE(size, 1000) << name;
    }
  }
  EXPECT_EQ(sum, saved.total_size);

  auto index = nlohmann::json::parse(read_file(dir_ / "model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], saved.total_size);
  EXPECT_EQ(index["weight_map"].size(), tensors.size());
  EXPECT_EQ(index["weight_map"]["layer.0"], "model-00001-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.1"], "model-00001-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.2"], "model-00002-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.6"], "model-00005-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["tail"], "model-00005-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["big"], "model-00004-of-00005.safetensors");

  auto loaded = accel::load_checkpoint(dir_);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, t] : tensors) EXPECT_TRUE(torch::equal(loaded[name], t)) << name;
  // The index file itself is also accepted as the path.
  EXPECT_EQ(accel::load_checkpoint(dir_ / "model.safetensors.index.json").size(), tensors.size());
}

TEST_F(ModelFiles, IndexTextIsWhatPythonWrites) {
  st::NamedTensors tensors{{"b", torch::zeros({2})}, {"a", torch::zeros({2})}};
  accel::save_model(tensors, dir_, SaveModelOptions().max_shard_size(int64_t{8}));
  // json.dumps(index, indent=2, sort_keys=True) + "\n"
  EXPECT_EQ(read_file(dir_ / "model.safetensors.index.json"),
            "{\n"
            "  \"metadata\": {\n"
            "    \"total_size\": 16\n"
            "  },\n"
            "  \"weight_map\": {\n"
            "    \"a\": \"model-00002-of-00002.safetensors\",\n"
            "    \"b\": \"model-00001-of-00002.safetensors\"\n"
            "  }\n"
            "}\n");
}

TEST_F(ModelFiles, ASaveReplacesTheOtherLayoutsFiles) {
  Net net;
  std::ofstream(dir_ / "config.json") << "{}";
  accel::save_model(net, dir_, SaveModelOptions().max_shard_size(int64_t{100}));
  auto sharded = dir_names(dir_);
  EXPECT_GT(sharded.size(), 3u);
  accel::save_model(net, dir_);
  EXPECT_EQ(dir_names(dir_), (std::vector<std::string>{"config.json", "model.safetensors"}));
  accel::save_model(net, dir_, SaveModelOptions().max_shard_size(int64_t{100}));
  EXPECT_EQ(dir_names(dir_), sharded);
  Net other;
  EXPECT_TRUE(accel::load_model_weights(other, dir_).ok());
  EXPECT_TRUE(torch::equal(other.emb->weight, net.emb->weight));
}

TEST_F(ModelFiles, SaveRefusesPickleAndBadNames) {
  Net net;
  EXPECT_THROW(accel::save_model(net, dir_, SaveModelOptions().safe_serialization(false)), std::invalid_argument);
  EXPECT_THROW(accel::save_model(net, dir_, SaveModelOptions().weights_name("model.bin")), std::invalid_argument);
  std::ofstream(dir_ / "file") << "x";
  EXPECT_THROW(accel::save_model(net, dir_ / "file"), std::invalid_argument);
}

TEST_F(ModelFiles, CustomWeightsName) {
  Net a, b;
  accel::save_model(a, dir_, SaveModelOptions().weights_name("model_1.safetensors").max_shard_size(int64_t{200}));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "model_1.safetensors.index.json"));
  EXPECT_TRUE(accel::load_model_weights(b, dir_, LoadModelOptions().weights_name("model_1.safetensors")).ok());
  EXPECT_TRUE(torch::equal(a.layers[1]->as<Block>()->running, b.layers[1]->as<Block>()->running));
}

TEST_F(ModelFiles, StrictLoadRefusesAndLeavesTheModelUntouched) {
  Net small;
  accel::save_model(small, dir_);
  Net bigger(4, 6, /*extra=*/true);
  auto before = bigger.emb->weight.clone();
  expect_error<std::runtime_error>([&] { accel::load_model_weights(bigger, dir_); },
                                   {"2 missing keys", "extra.weight", "extra.bias", "nothing was loaded"});
  EXPECT_TRUE(torch::equal(bigger.emb->weight, before));

  // Not strict: the matching tensors load, the rest is reported.
  auto report = accel::load_model_weights(bigger, dir_, LoadModelOptions().strict(false));
  EXPECT_EQ(report.missing_keys, (std::vector<std::string>{"extra.weight", "extra.bias"}));
  EXPECT_TRUE(torch::equal(bigger.emb->weight, small.emb->weight));

  // The other way round: the checkpoint has keys the model lacks.
  accel::save_model(Net(4, 6, true), dir_);
  Net plain;
  auto unexpected = accel::load_model_weights(plain, dir_, LoadModelOptions().strict(false));
  // In file order (Python's layout: by dtype, then name).
  EXPECT_EQ(unexpected.unexpected_keys, (std::vector<std::string>{"extra.bias", "extra.weight"}));
  EXPECT_THROW(accel::load_model_weights(plain, dir_), std::runtime_error);
}

TEST_F(ModelFiles, ShapeAndDtypeMismatchesAreReported) {
  accel::save_model(Net(4, 6), dir_);
  Net wide(4, 7);
  auto report = accel::load_model_weights(wide, dir_, LoadModelOptions().strict(false));
  ASSERT_EQ(report.mismatched.size(), 1u);  // emb.weight; head.weight is its tie
  EXPECT_EQ(report.mismatched[0].name, "emb.weight");
  EXPECT_EQ(report.mismatched[0].expected, "[7, 4] Float");
  EXPECT_EQ(report.mismatched[0].found, "[6, 4] Float");
  EXPECT_EQ(report.missing_keys, std::vector<std::string>{"head.weight"});

  Net doubled;
  doubled.to(torch::kFloat64);
  EXPECT_THROW(accel::load_model_weights(doubled, dir_), std::runtime_error);
  auto cast = accel::load_model_weights(doubled, dir_, LoadModelOptions().allow_dtype_cast(true));
  EXPECT_TRUE(cast.ok()) << cast.describe();
  EXPECT_EQ(doubled.scale.scalar_type(), torch::kFloat64);
}

TEST_F(ModelFiles, IndexIsUntrusted) {
  st::save_file({{"w", torch::ones({2})}}, dir_ / "shard.safetensors");
  auto write_index = [&](const std::string& weight_map) {
    std::ofstream(dir_ / "model.safetensors.index.json") << R"({"metadata":{},"weight_map":)" << weight_map << "}";
  };
  auto expect_refused = [&](const std::string& fragment) {
    expect_error<std::runtime_error>([&] { accel::load_checkpoint(dir_); }, {fragment});
  };
  write_index(R"({"w":"../shard.safetensors"})");
  expect_refused("not a file in the index's directory");
  write_index(R"({"w":"/etc/passwd"})");
  expect_refused("not a file in the index's directory");
  write_index(R"({"w":"gone.safetensors"})");
  expect_refused("shard 'gone.safetensors' is missing");
  write_index(R"({"v":"shard.safetensors"})");
  expect_refused("says tensor 'v' is in 'shard.safetensors', which does not hold it");
  write_index(R"({"w":7})");
  expect_refused("not a file name");
  write_index(R"([)");
  expect_refused("not valid JSON");
  write_index(R"({"w":"shard.safetensors"})");
  EXPECT_EQ(accel::load_checkpoint(dir_).size(), 1u);
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  EXPECT_THROW(accel::load_checkpoint(dir_), std::runtime_error);
}

}  // namespace
