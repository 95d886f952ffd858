// The GPT-2 example refuses checkpoint folders it cannot load faithfully,
// naming the file, the key or tensor, and what it expected: malformed or
// unsupported config.json values, shapes that disagree with the config,
// missing and extra tensors, an untied output projection. A refused load
// leaves the model as it was. (In test_peer beside the peer test, which
// compiles the example's sources; see tests/CMakeLists.txt.)
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/checkpoint/model_files.h"
#include "gpt2/hf_checkpoint.h"
#include "support/distributed.h"
#include "support/errors.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using accel::testing::expect_error;
using accel::testing::TempDir;
using nlohmann::json;

namespace {

gpt2::GPT2Options small() {
  return gpt2::GPT2Options().n_layer(2).n_head(2).n_embd(32).n_positions(16).vocab_size(300);
}

class Gpt2Refusals : public ::testing::Test {
 protected:
  void SetUp() override {
    accel::testing::seed_cpu(11);
    gpt2::save_pretrained(*gpt2::GPT2(small()), dir_);
    config_ = json::parse(std::ifstream(dir_ / "config.json"));
  }

  void write_config(const std::string& text) { std::ofstream(dir_ / "config.json") << text; }
  void set(const std::string& key, const json& value) {
    auto doc = config_;
    doc[key] = value;
    write_config(doc.dump());
  }
  std::string config_path() const { return (dir_ / "config.json").string(); }
  std::string weights_path() const { return (dir_ / "model.safetensors").string(); }

  TempDir dir_{"gpt2_refusals"};
  json config_;
};

}  // namespace

TEST_F(Gpt2Refusals, ConfigThatIsNotJson) {
  write_config("{\"n_layer\": 2,");
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); }, {config_path(), "not valid JSON"});
}

TEST_F(Gpt2Refusals, MissingConfig) {
  fs::remove(dir_ / "config.json");
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); }, {"cannot open", config_path()});
}

TEST_F(Gpt2Refusals, ValueOfTheWrongType) {
  set("n_embd", "wide");
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); },
                                   {config_path(), "\"n_embd\"", "\"wide\"", "expected an integer"});
}

TEST_F(Gpt2Refusals, HeadsThatDoNotDivideTheWidth) {
  set("n_head", 3);
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); }, {config_path(), "n_embd = 32", "n_head = 3"});
}

TEST_F(Gpt2Refusals, VariantsThisModelDoesNotImplement) {
  set("activation_function", "relu");
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); },
                                   {config_path(), "activation_function", "\"relu\"", "gelu_new"});
  set("tie_word_embeddings", false);
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); }, {"tie_word_embeddings", "false"});
  set("n_inner", 100);
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); }, {"n_inner", "100", "128"});
  set("model_type", "llama");
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); }, {"model_type", "\"llama\"", "\"gpt2\""});
}

TEST_F(Gpt2Refusals, ShapeThatDisagreesWithTheConfig) {
  set("vocab_size", 301);
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); },
                                   {weights_path(), "\"transformer.wte.weight\"", "[300, 32]", "[301, 32]"});
}

TEST_F(Gpt2Refusals, WeightInLinearsLayoutInsteadOfConv1D) {
  // A file written with torch::nn::Linear's [out, in] instead of Conv1D's
  // [in, out]: the error names both layouts.
  auto state = gpt2::hf_state(*gpt2::from_pretrained(dir_));
  for (auto& [name, t] : state)
    if (name == "transformer.h.1.mlp.c_fc.weight") t = t.t().contiguous();
  accel::safetensors::save_file(state, dir_ / "model.safetensors", {{"format", "pt"}});
  expect_error<std::runtime_error>(
      [&] { gpt2::from_pretrained(dir_); },
      {weights_path(), "\"transformer.h.1.mlp.c_fc.weight\"", "[128, 32]", "Conv1D [in, out]", "[32, 128]"});
}

TEST_F(Gpt2Refusals, RefusedLoadLeavesTheModelAsItWas) {
  accel::testing::seed_cpu(12);
  gpt2::GPT2 model(small().vocab_size(301));
  std::vector<torch::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.clone());
  expect_error<std::runtime_error>([&] { gpt2::load_hf_weights(*model, dir_); }, {"transformer.wte.weight"});
  auto after = model->parameters();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i]));
}

TEST_F(Gpt2Refusals, MissingAndUnexpectedTensors) {
  set("n_layer", 3);
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); },
                                   {"lacks", "transformer.h.2.attn.c_attn.weight"});
  set("n_layer", 1);
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); },
                                   {"does not have", weights_path(), "transformer.h.1.mlp.c_fc.weight"});
}

TEST_F(Gpt2Refusals, OutputProjectionThatIsNotTheEmbedding) {
  auto state = gpt2::hf_state(*gpt2::from_pretrained(dir_));
  state.emplace_back("lm_head.weight", torch::randn({300, 32}));
  accel::safetensors::save_file(state, dir_ / "model.safetensors", {{"format", "pt"}});
  expect_error<std::runtime_error>([&] { gpt2::from_pretrained(dir_); },
                                   {"\"lm_head.weight\"", "\"transformer.wte.weight\"", "ties"});
}
