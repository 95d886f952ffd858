// accel's safetensors files against Python's safetensors, huggingface_hub
// and Accelerate (the .venv peers): each reads what the other writes, bit
// for bit, every dtype; both writers produce the same bytes; sharded saves
// split exactly as huggingface_hub splits.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/model_files.h"
#include "accel_test_paths.h"
#include "support/files.h"
#include "support/peers.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

namespace st = accel::safetensors;
using accel::testing::peer_script;
using accel::testing::random_bits;
using accel::testing::read_file;
using accel::testing::TempDir;
using nlohmann::json;

namespace {

// Runs the peer script; returns the JSON it prints after its marker.
json run_peer(const std::vector<std::string>& args) {
  std::string command = std::string(ACCEL_PYTHON) + " " + peer_script("safetensors_peer.py");
  for (const auto& a : args) command += " '" + a + "'";
  command += " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  int status = ::pclose(pipe);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("peer script failed: " + command + "\n" + output);
  }
  auto marker = output.rfind("@@RESULT@@");
  if (marker == std::string::npos) throw std::runtime_error("peer script printed no result:\n" + output);
  return json::parse(output.substr(marker + 10));
}

std::string fnv1a64(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).contiguous();
  auto p = static_cast<const unsigned char*>(c.data_ptr());
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < c.nbytes(); ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

void expect_described(const json& entry, const torch::Tensor& t, const std::string& name) {
  ASSERT_TRUE(t.defined()) << name;
  EXPECT_EQ(entry["dtype"].get<std::string>(), st::dtype_name(st::from_scalar_type(t.scalar_type()))) << name;
  EXPECT_EQ(entry["shape"].get<std::vector<int64_t>>(), t.sizes().vec()) << name;
  EXPECT_EQ(entry["fnv"].get<std::string>(), fnv1a64(t)) << name;
}

class SafetensorsPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_PEERS("torch", "safetensors");
    torch::manual_seed(13);
  }
  TempDir dir_{"safetensors_peer"};
};

TEST_F(SafetensorsPeer, PythonReadsWhatAccelWritesAndWritesTheSameBytes) {
  // Every dtype Python's torch binding loads (it lacks F8_E8M0, see below).
  st::NamedTensors tensors;
  for (auto type : {torch::kFloat64, torch::kFloat32, torch::kFloat16, torch::kBFloat16, torch::kInt64, torch::kInt32,
                    torch::kInt16, torch::kInt8, torch::kUInt8, torch::kBool, torch::kFloat8_e4m3fn,
                    torch::kFloat8_e5m2, torch::kFloat8_e4m3fnuz, torch::kFloat8_e5m2fnuz, torch::kUInt16,
                    torch::kUInt32, torch::kUInt64, torch::kComplexFloat}) {
    tensors.emplace_back(std::string("t_") + c10::toString(type), random_bits(type, {3, 5}));
  }
  tensors.emplace_back("scalar", torch::tensor(-1.25));
  tensors.emplace_back("empty", torch::zeros({2, 0}, torch::kInt32));
  tensors.emplace_back("transposed", torch::randn({3, 4}).t());
  auto path = dir_ / "accel.safetensors";
  st::save_file(tensors, path, {{"format", "pt"}});

  auto seen = run_peer({"manifest", path.string()});
  EXPECT_EQ(seen["metadata"], json({{"format", "pt"}}));
  ASSERT_EQ(seen["tensors"].size(), tensors.size());
  for (const auto& [name, t] : tensors) expect_described(seen["tensors"][name], t, name);

  // Python's writer, given the same tensors, writes the same bytes.
  auto python_path = dir_ / "python.safetensors";
  run_peer({"resave", path.string(), python_path.string()});
  EXPECT_EQ(read_file(python_path), read_file(path));
}

TEST_F(SafetensorsPeer, AccelReadsWhatPythonWritesAndWritesTheSameBytes) {
  auto path = dir_ / "python.safetensors";
  auto written = run_peer({"write", path.string()});
  auto loaded = st::load_file(path);
  ASSERT_EQ(loaded.size(), written["tensors"].size());
  for (const auto& [name, entry] : written["tensors"].items()) expect_described(entry, loaded[name], name);
  EXPECT_EQ(st::load_metadata(path), (st::Metadata{{"format", "pt"}}));
  // Includes F8_E8M0, which Python writes but cannot load into torch.
  EXPECT_EQ(loaded["t_F8_E8M0"].scalar_type(), torch::kFloat8_e8m0fnu);

  EXPECT_EQ(st::save(st::to_named(loaded), {{"format", "pt"}}), read_file(path));
}

TEST_F(SafetensorsPeer, ShardedSaveIsWhatHuggingFaceReadsAndSplits) {
  st::NamedTensors tensors;
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) {
    auto prefix = "model.layers." + std::to_string(i) + ".";
    tensors.emplace_back(prefix + "weight", torch::randn({16, 16}));
    tensors.emplace_back(prefix + "bias", torch::randn({16}).to(torch::kBFloat16));
    tensors.emplace_back(prefix + "step", torch::tensor(int64_t{i}));
  }
  tensors.emplace_back("lm_head.weight", torch::randn({40, 16}));  // 2560 B: over the limit
  for (const auto& [name, t] : tensors) order.push_back(name);
  const int64_t limit = 2000;
  auto saved = accel::save_model(tensors, dir_, accel::SaveModelOptions().max_shard_size(limit));
  ASSERT_TRUE(saved.sharded());
  std::ofstream(dir_ / "order.json") << json(order).dump();

  auto seen = run_peer({"sharded", dir_.path().string(), (dir_ / "order.json").string(), std::to_string(limit)});
  EXPECT_TRUE(seen["split_matches"].get<bool>()) << seen["python_split"].dump(2);
  EXPECT_TRUE(seen["total_size_matches"].get<bool>());
  ASSERT_EQ(seen["tensors"].size(), tensors.size());
  for (const auto& [name, t] : tensors) expect_described(seen["tensors"][name], t, name);
}

// The module Python's TiedModel has, in LibTorch.
struct Embedding : torch::nn::Module {
  Embedding() { weight = register_parameter("weight", torch::zeros({10, 8})); }
  torch::Tensor weight;
};
struct Head : torch::nn::Module {
  explicit Head(torch::Tensor w) { weight = register_parameter("weight", std::move(w)); }
  torch::Tensor weight;
};
struct TiedModel : torch::nn::Module {
  TiedModel() {
    emb = register_module("emb", std::make_shared<Embedding>());
    layers = register_module("layers", torch::nn::ModuleList(torch::nn::Linear(8, 8), torch::nn::Linear(8, 8)));
    head = register_module("head", std::make_shared<Head>(emb->weight));
  }
  std::shared_ptr<Embedding> emb;
  torch::nn::ModuleList layers{nullptr};
  std::shared_ptr<Head> head;
};

TEST_F(SafetensorsPeer, AccelLoadsAcceleratesShardedSaveOfATiedModel) {
  auto written = run_peer({"accelerate-save", dir_.path().string(), "400"});
  EXPECT_EQ(written["files"].size(), 4u);  // three shards and the index
  TiedModel model;
  auto report = accel::load_model_weights(model, dir_);
  EXPECT_TRUE(report.ok()) << report.describe();
  for (const auto& [name, t] : accel::model_state(model)) expect_described(written["tensors"][name], t, name);
  EXPECT_EQ(model.head->weight.data_ptr(), model.emb->weight.data_ptr());

  // And accel's own save of that model is what Accelerate wrote.
  auto again = dir_ / "again";
  accel::save_model(model, again, accel::SaveModelOptions().max_shard_size(int64_t{400}));
  for (const auto& file : written["files"]) {
    EXPECT_EQ(read_file(again / file.get<std::string>()), read_file(dir_ / file.get<std::string>())) << file;
  }
}

}  // namespace
