// estimate-memory: a model's total size and largest layer from its
// safetensors headers or its config, each dtype's row, and Accelerate's
// way of printing them, checked against sizes worked out by hand here (the
// peer test checks them against Accelerate itself).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "accel/big_model/memory_estimate.h"
#include "accel/big_model/model_size.h"
#include "accel/big_model/tensor_shapes.h"
#include "accel/checkpoint/model_files.h"
#include "accel_test_paths.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using accel::ModelSize;
using accel::testing::expect_error;
using accel::testing::TempDir;

namespace {

// A model whose sizes are known by construction (bytes as in the float32
// model: floating dtypes 4 an element whatever the file holds):
//   emb.weight           [8, 8] F16                  256
//   blocks.<i> (11)      fc [8, 8] BF16 + [8] F32    288
//                        norm [8] F16 + [] I64        40   = 328 a block
//   encoder.scale        [100] F32                   400   (the opened module's own)
//   encoder.inner.weight [4] F32                      16
//   mask                 [64] BOOL                     8   (1/8 byte each)
//   steps                [] I64                        8
// The blocks are the largest layers (328); opened, their largest leaf (fc,
// 288) would be, and the encoder counted whole (416) would beat them.
constexpr double kBlock = 328;
constexpr double kTotal = 256 + 11 * kBlock + 400 + 16 + 8 + 8;

accel::safetensors::NamedTensors known_model() {
  accel::safetensors::NamedTensors t;
  t.emplace_back("emb.weight", torch::zeros({8, 8}, torch::kHalf));
  for (int i = 0; i < 11; ++i) {
    const std::string block = "blocks." + std::to_string(i);
    t.emplace_back(block + ".fc.weight", torch::zeros({8, 8}, torch::kBFloat16));
    t.emplace_back(block + ".fc.bias", torch::zeros({8}));
    t.emplace_back(block + ".norm.weight", torch::zeros({8}, torch::kHalf));
    t.emplace_back(block + ".norm.count", torch::zeros({}, torch::kInt64));
  }
  t.emplace_back("encoder.scale", torch::zeros({100}));
  t.emplace_back("encoder.inner.weight", torch::zeros({4}));
  t.emplace_back("mask", torch::zeros({64}, torch::kBool));
  t.emplace_back("steps", torch::zeros({}, torch::kInt64));
  return t;
}

std::vector<std::string> block_names() {
  std::vector<std::string> names;
  for (int i = 0; i < 11; ++i) names.push_back("blocks." + std::to_string(i));  // blocks.2 before blocks.10
  return names;
}

void write_json(const fs::path& path, const nlohmann::json& value) { std::ofstream(path) << value.dump(); }

TEST(ModelSize, FromTheHeadersOfASingleOrShardedCheckpoint) {
  TempDir dir("estimate");
  accel::write_model_files(known_model(), dir / "single");
  const auto sharded =
      accel::write_model_files(known_model(), dir / "sharded", accel::SaveModelOptions().max_shard_size(600));
  ASSERT_GT(sharded.files.size(), 2u);
  for (const fs::path& path : {dir / "single", dir / "single" / "model.safetensors", dir / "sharded",
                               dir / "sharded" / "model.safetensors.index.json"}) {
    fs::path source;
    const ModelSize size = accel::model_size(accel::model_tensor_shapes(path, &source));
    EXPECT_EQ(size.total_bytes, kTotal) << path;
    EXPECT_EQ(size.largest_layer_bytes, kBlock) << path;
    EXPECT_EQ(size.largest_layers, block_names()) << path;
    EXPECT_EQ(source.filename(), fs::is_directory(path) ? (path.filename() == "single" ? "model.safetensors"
                                                                                       : "model.safetensors.index.json")
                                                        : path.filename());
  }
  // The headers give the file's dtypes; only the sizing counts them as float32.
  const auto shapes = accel::checkpoint_tensor_shapes(dir / "sharded");
  ASSERT_EQ(shapes.size(), known_model().size());
  EXPECT_EQ(shapes.front().name, "blocks.0.fc.bias");
  EXPECT_EQ(shapes.front().dtype, torch::kFloat);
  EXPECT_EQ(shapes[1].dtype, torch::kBFloat16);
  EXPECT_EQ(shapes.back().name, "steps");
}

TEST(ModelSize, ModelsOwnTensorsAreLayersAndRefusesNamesThatCannotBeAModule) {
  // Top-level tensors are layers of their own (Accelerate walks the model's
  // own parameters and buffers), and equal sizes are all named.
  ModelSize size = accel::model_size({{"scale", {10}}, {"lin.weight", {5, 2}}, {"lin.bias", {0}}});
  EXPECT_EQ(size.total_bytes, 80);
  EXPECT_EQ(size.largest_layers, (std::vector<std::string>{"scale", "lin"}));
  EXPECT_EQ(accel::float32_model_element_size(torch::kFloat8_e4m3fn), 4);
  EXPECT_EQ(accel::float32_model_element_size(torch::kInt8), 1);
  EXPECT_EQ(accel::float32_model_element_size(torch::kBool), 0.125);

  expect_error<std::invalid_argument>([] { accel::model_size({{"a.w", {1}}, {"a.w", {2}}}); }, {"'a.w'", "twice"});
  expect_error<std::invalid_argument>(
      [] {
        accel::model_size({{"a", {1}}, {"a.w", {2}}});
      },
      {"'a.w'", "inside", "'a'"});
  expect_error<std::invalid_argument>([] { accel::model_size({{"a.w", {1}}, {"a", {2}}}); }, {"'a'", "'a.w'"});
  expect_error<std::invalid_argument>([] { accel::model_size({{"a..w", {1}}}); }, {"'a..w'", "empty part"});
}

TEST(MemoryEstimate, EachDtypeDividesTheFloat32SizesAsAccelerateDoes) {
  ModelSize size;
  size.total_bytes = kTotal;
  size.largest_layer_bytes = kBlock;
  const auto row = [&](const char* dtype) { return accel::estimate_memory(size, dtype); };
  EXPECT_EQ(row("float32").total_bytes, kTotal);
  EXPECT_EQ(row("float32").training_bytes, 4 * kTotal);  // weights, gradients, 2 Adam states
  EXPECT_EQ(row("float16").largest_layer_bytes, kBlock / 2);
  EXPECT_EQ(row("float16").total_bytes, kTotal / 2);
  EXPECT_EQ(row("float16").training_bytes, 2 * kTotal);  // float32 master weights and states
  EXPECT_EQ(row("bfloat16").total_bytes, row("float16").total_bytes);
  EXPECT_EQ(row("bfloat16").training_bytes, row("float16").training_bytes);
  EXPECT_EQ(row("int8").total_bytes, kTotal / 4);
  EXPECT_FALSE(row("int8").training_bytes.has_value());
  EXPECT_EQ(row("int4").largest_layer_bytes, 41);  // 328 / 8
  EXPECT_EQ(row("int4").total_bytes, kTotal / 8);
  EXPECT_EQ(accel::default_estimate_dtypes(), (std::vector<std::string>{"float32", "float16", "int8", "int4"}));
  expect_error<std::invalid_argument>([&] { row("fp16"); }, {"'fp16'", "float32, float16, bfloat16, int8, int4"});
}

TEST(MemoryEstimate, SizesReadAsAcceleratesConvertBytesWritesThem) {
  EXPECT_EQ(accel::format_bytes(0), "0.0 bytes");
  EXPECT_EQ(accel::format_bytes(512), "512.0 bytes");
  EXPECT_EQ(accel::format_bytes(1023.996), "1024.0 bytes");  // rounded after the unit is chosen
  EXPECT_EQ(accel::format_bytes(1024), "1.0 KB");
  EXPECT_EQ(accel::format_bytes(1536), "1.5 KB");
  // Ties of the exact binary value round to even; 12.345 is a little above
  // its decimal text, so it rounds up.
  EXPECT_EQ(accel::format_bytes(1152), "1.12 KB");
  EXPECT_EQ(accel::format_bytes(1408), "1.38 KB");
  EXPECT_EQ(accel::format_bytes(0.125), "0.12 bytes");
  EXPECT_EQ(accel::format_bytes(12.345), "12.35 bytes");
  EXPECT_EQ(accel::format_bytes(3.5 * (1ull << 30)), "3.5 GB");
  EXPECT_EQ(accel::format_bytes(26429374976.0), "24.61 GB");
  EXPECT_EQ(accel::format_bytes(double(1ull << 50)), "1.0 PB");
  EXPECT_EQ(accel::format_bytes(double(1ull << 60)), "1024.0 PB");
}

// Python's len(): characters.
size_t characters(const std::string& line) {
  return std::count_if(line.begin(), line.end(), [](char c) { return (c & 0xC0) != 0x80; });
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(MemoryEstimate, TheTableIsABoxWhateverTheTitle) {
  ModelSize size;
  size.total_bytes = kTotal;
  size.largest_layer_bytes = kBlock;
  std::vector<accel::MemoryEstimate> rows;
  for (const auto& dtype : accel::estimate_dtypes()) rows.push_back(accel::estimate_memory(size, dtype));
  for (const std::string model : {"m", "/a/rather/long/path/to/a/model/folder/that/widens/the/table/config.json"}) {
    const auto lines = lines_of(accel::memory_table(rows, model));
    ASSERT_EQ(lines.size(), 6 + rows.size()) << model;  // 5 lines of title and header, the bottom
    for (const auto& line : lines) EXPECT_EQ(characters(line), characters(lines.front())) << line;
    EXPECT_TRUE(lines.front().starts_with("┌") && lines.back().starts_with("└")) << model;
    EXPECT_NE(lines[1].find("Memory Usage for loading `" + model + "`"), std::string::npos);
    EXPECT_NE(lines[3].find("Training using Adam"), std::string::npos) << lines[3];
    EXPECT_NE(lines[5].find("│float32 │"), std::string::npos) << lines[5];
    EXPECT_NE(lines[5].find(accel::format_bytes(4 * kTotal)), std::string::npos) << lines[5];
    EXPECT_NE(lines[8].find("N/A"), std::string::npos) << lines[8];  // int8
  }
}

TEST(ConfigShapes, Gpt2AndLlamaHaveTheirKnownParameterCounts) {
  TempDir dir("estimate_config");
  // GPT-2 small's defaults: GPT2Model has 124,439,808 parameters, its
  // largest layer is the token embedding (50257 x 768).
  write_json(dir / "gpt2.json", {{"model_type", "gpt2"}});
  ModelSize gpt2 = accel::model_size(accel::config_tensor_shapes(dir / "gpt2.json"));
  EXPECT_EQ(gpt2.total_bytes, 124439808.0 * 4);
  EXPECT_EQ(gpt2.largest_layer_bytes, 50257.0 * 768 * 4);
  EXPECT_EQ(gpt2.largest_layers, std::vector<std::string>{"wte"});
  // The same arithmetic for any size: V*E + P*E + L*(12E^2 + 13E) + 2E.
  write_json(
      dir / "small.json",
      {{"model_type", "gpt2"}, {"vocab_size", 100}, {"n_positions", 16}, {"n_embd", 8}, {"n_layer", 3}, {"n_head", 2}});
  ModelSize small = accel::model_size(accel::config_tensor_shapes(dir / "small.json"));
  EXPECT_EQ(small.total_bytes, 4.0 * (100 * 8 + 16 * 8 + 3 * (12 * 64 + 13 * 8) + 2 * 8));
  EXPECT_EQ(small.largest_layers, (std::vector<std::string>{"h.0", "h.1", "h.2"}));  // 872 params > 800
  // LLaMA 2 7B: 6,738,415,616 parameters with its untied head (32000 x
  // 4096), which the base model Accelerate sizes lacks; plus the rotary
  // buffers (2 x 64 floats). A decoder layer is its largest layer.
  write_json(dir / "llama.json", {{"model_type", "llama"}, {"max_position_embeddings", 4096}});
  ModelSize llama = accel::model_size(accel::config_tensor_shapes(dir / "llama.json"));
  EXPECT_EQ(llama.total_bytes, (6738415616.0 - 32000.0 * 4096) * 4 + 2 * 64 * 4);
  EXPECT_EQ(llama.largest_layer_bytes, (4.0 * 4096 * 4096 + 3.0 * 4096 * 11008 + 2 * 4096) * 4);
  EXPECT_EQ(llama.largest_layers.size(), 32u);
  // Grouped-query attention and a scaled rotary embedding over half the head.
  write_json(dir / "gqa.json", {{"model_type", "llama"},
                                {"vocab_size", 10},
                                {"hidden_size", 16},
                                {"intermediate_size", 24},
                                {"num_hidden_layers", 1},
                                {"num_attention_heads", 4},
                                {"num_key_value_heads", 2},
                                {"attention_bias", true},
                                {"rope_scaling", {{"rope_type", "linear"}, {"factor", 2.0}}},
                                {"partial_rotary_factor", 0.5}});
  const auto gqa = accel::config_tensor_shapes(dir / "gqa.json");
  EXPECT_EQ(accel::model_size(gqa).total_bytes,
            4.0 * (10 * 16 + (16 * 16 + 16) * 2 + (8 * 16 + 8) * 2 + 3 * 16 * 24 + 2 * 16 + 16 + 2 * 1));
}

TEST(ConfigShapes, RefusesWhatItCannotSizeNamingIt) {
  TempDir dir("estimate_config");
  const auto refused = [&](const nlohmann::json& config, const std::vector<std::string>& parts) {
    write_json(dir / "config.json", config);
    expect_error<std::invalid_argument>([&] { accel::config_tensor_shapes(dir / "config.json"); }, parts);
  };
  refused({{"model_type", "bert"}}, {"'bert'", "gpt2, llama", "safetensors"});
  refused({{"n_layer", 2}}, {"model_type", "gpt2, llama"});
  refused({{"model_type", "gpt2"}, {"n_embd", "768"}}, {"\"n_embd\"", "\"768\"", "integer"});
  refused({{"model_type", "gpt2"}, {"n_layer", -1}}, {"\"n_layer\"", "-1"});
  refused({{"model_type", "gpt2"}, {"n_embd", 10}, {"n_head", 3}}, {"n_embd 10", "n_head 3"});
  refused({{"model_type", "gpt2"}, {"add_cross_attention", 1}}, {"add_cross_attention", "true or false"});
  refused({{"model_type", "llama"}, {"rope_scaling", {{"rope_type", "su"}}}}, {"'su'", "llama3"});
  refused({{"model_type", "llama"}, {"vocab_size", 1ll << 50}}, {"vocab_size", "1125899906842624"});
  std::ofstream(dir / "config.json") << "{\"model_type\": ";
  expect_error<std::invalid_argument>([&] { accel::config_tensor_shapes(dir / "config.json"); },
                                      {"config.json", "JSON"});
}

TEST(ModelTensorShapes, TakesTheWeightsBeforeTheConfigAndNamesAPathWithNeither) {
  TempDir dir("estimate_paths");
  fs::create_directories(dir / "model");
  write_json(dir / "model" / "config.json", {{"model_type", "gpt2"}, {"n_layer", 0}});
  fs::path source;
  accel::model_tensor_shapes(dir / "model", &source);
  EXPECT_EQ(source, dir / "model" / "config.json");
  accel::write_model_files(known_model(), dir / "model");
  EXPECT_EQ(accel::model_size(accel::model_tensor_shapes(dir / "model", &source)).total_bytes, kTotal);
  EXPECT_EQ(source, dir / "model" / "model.safetensors");

  fs::create_directories(dir / "empty");
  expect_error<std::invalid_argument>([&] { accel::model_tensor_shapes(dir / "empty"); },
                                      {(dir / "empty").string(), "model.safetensors", "config.json"});
  expect_error<std::invalid_argument>([&] { accel::model_tensor_shapes(dir / "missing"); },
                                      {(dir / "missing").string(), "no such file"});
  std::ofstream(dir / "weights.bin") << "x";
  expect_error<std::invalid_argument>([&] { accel::model_tensor_shapes(dir / "weights.bin"); },
                                      {"weights.bin", "safetensors"});
  // An index naming a shard that is not there.
  write_json(dir / "model.safetensors.index.json", {{"weight_map", {{"w", "model-00001-of-00002.safetensors"}}}});
  expect_error<std::runtime_error>([&] { accel::model_tensor_shapes(dir / "model.safetensors.index.json"); },
                                   {"model-00001-of-00002.safetensors", "missing"});
}

TEST(EstimateMemoryCommand, PrintsTheTableOrJsonAndRefusesBadInput) {
  const std::string accel_bin = std::string(ACCEL_BINARY_DIR) + "/accel";
  if (!fs::exists(accel_bin)) GTEST_SKIP() << "build the accel command first (" << accel_bin << ")";
  TempDir dir("estimate_cli");
  accel::write_model_files(known_model(), dir / "model");
  const auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {accel_bin, "estimate-memory"});
    return accel::testing::run_program(args, dir / "out.log");
  };
  auto table = run({(dir / "model").string()});
  ASSERT_EQ(table.status, 0) << table.output;
  EXPECT_NE(table.output.find("Memory Usage for loading `" + (dir / "model").string() + "`"), std::string::npos);
  EXPECT_NE(table.output.find("│  int4 │"), std::string::npos) << table.output;

  auto json = run({(dir / "model").string(), "--json", "--dtypes", "float32", "bfloat16"});
  ASSERT_EQ(json.status, 0) << json.output;
  const auto out = nlohmann::json::parse(json.output);
  EXPECT_EQ(out["largest_layer_names"].get<std::vector<std::string>>(), block_names());
  ASSERT_EQ(out["rows"].size(), 2u);
  EXPECT_EQ(out["rows"][0]["total_size"].get<double>(), kTotal);
  EXPECT_EQ(out["rows"][1]["dtype"], "bfloat16");
  EXPECT_EQ(out["rows"][1]["training_using_adam"].get<double>(), 2 * kTotal);

  auto bad_dtype = run({(dir / "model").string(), "--dtypes", "float32", "fp8"});
  EXPECT_EQ(bad_dtype.status, 2);
  EXPECT_NE(bad_dtype.output.find("unknown dtype 'fp8'"), std::string::npos) << bad_dtype.output;
  auto missing = run({(dir / "nothing").string()});
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.output.find((dir / "nothing").string()), std::string::npos) << missing.output;
}

}  // namespace
