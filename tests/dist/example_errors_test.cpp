// Issue 20, the examples (what users copy): a program built on accel ends
// any error with its message and status 1: no "terminate called", no C++
// stack trace, no segfault on a hostile checkpoint folder (gpt2 --from: a
// tensor name of 100,000 digits, a config.json nested 200,000 deep, sizes
// that would need petabytes or 10^9 layers).
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/checkpoint/safetensors.h"
#include "support/environment.h"
#include "support/files.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using accel::testing::binary_path;
using accel::testing::EnvChange;
using accel::testing::Outcome;
using accel::testing::run_program;
using accel::testing::TempDir;

class ExampleErrors : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(dir_ / "model"); }

  Outcome run(std::vector<std::string> argv, const std::map<std::string, std::string>& env = {}) {
    const std::string binary = binary_path("examples/" + argv[0]);
    EXPECT_TRUE(fs::exists(binary)) << "build the examples";
    argv[0] = binary;
    // No launcher's variables but those of `env`, and no GPU.
    std::vector<EnvChange> changes;
    for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"})
      changes.emplace_back(v, std::nullopt);
    changes.insert(changes.end(), env.begin(), env.end());
    changes.emplace_back("CUDA_VISIBLE_DEVICES", "");
    return run_program(argv, dir_ / "out.log", {.env = changes});
  }
  // A clean refusal: status 1, the program's prefix, the words, no crash text.
  static void expect_refusal(const Outcome& r, const std::string& prefix, const std::vector<std::string>& words) {
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_EQ(r.output.rfind(prefix, 0), 0u) << r.output;
    for (const auto& w : words) EXPECT_NE(r.output.find(w), std::string::npos) << w << " not in: " << r.output;
    for (const char* crash : {"terminate called", "Exception raised from", "frame #", "Segmentation"})
      EXPECT_EQ(r.output.find(crash), std::string::npos) << r.output;
    EXPECT_LT(r.output.size(), 2000u) << r.output.substr(0, 2000);
  }
  void config(const std::string& json) { std::ofstream(dir_ / "model" / "config.json") << json; }
  TempDir dir_{"examples"};
};

TEST_F(ExampleErrors, SpiralsEndsAnAcceleratorErrorWithAMessage) {
  // An inconsistent topology (rank 5 of 2) makes the Accelerator throw.
  expect_refusal(run({"spirals"}, {{"RANK", "5"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "2"}}),
                 "spirals: error:", {"rank 5"});
  expect_refusal(run({"spirals"}, {{"SPIRALS_EPOCHS", "lots"}}),
                 "spirals: error:", {"environment variable SPIRALS_EPOCHS: expected an integer, got 'lots'"});
}

TEST_F(ExampleErrors, Gpt2RefusesHostileConfigJson) {
  config("{\"n_layer\": " + std::string(200'000, '[') + std::string(200'000, ']') + "}");
  expect_refusal(run({"gpt2", "--from", (dir_ / "model").string(), "--steps", "10"}),
                 "gpt2:", {"config.json", "nests deeper than 64"});
  config("{\"model_type\": \"" + std::string(100'000, 'x') + "\"}");
  expect_refusal(run({"gpt2", "--from", (dir_ / "model").string(), "--steps", "10"}),
                 "gpt2:", {"model_type", "100002 bytes"});
  // Sizes beyond any machine: refused by name before anything is allocated.
  for (const std::string& sizes : {std::string("\"vocab_size\": 1000000000000"),
                                   std::string("\"n_layer\": 1000000000, \"n_embd\": 8, \"n_head\": 2"),
                                   std::string("\"vocab_size\": 18446744073709551615")}) {
    config("{" + sizes + "}");
    const Outcome r = run({"gpt2", "--from", (dir_ / "model").string(), "--steps", "10"});
    expect_refusal(r, "gpt2:", {"config.json"});
    EXPECT_TRUE(r.output.find("more than this machine's") != std::string::npos ||
                r.output.find("expected an integer") != std::string::npos)
        << r.output;
    EXPECT_LT(r.seconds, 30);
  }
}

TEST_F(ExampleErrors, Gpt2RefusesATensorNameOfAHundredThousandDigits) {
  config(R"({"n_layer": 1, "n_head": 2, "n_embd": 8, "n_positions": 8, "vocab_size": 16})");
  const std::string name = "transformer.h." + std::string(100'000, '7') + ".attn.weight";
  accel::safetensors::save_file({{name, torch::zeros({2})}}, dir_ / "model" / "model.safetensors");
  expect_refusal(run({"gpt2", "--from", (dir_ / "model").string(), "--steps", "10"}),
                 "gpt2:", {"holds tensors this model does not have", "bytes"});
}

}  // namespace
