// `accel estimate-memory` against `accelerate estimate-memory`: the same
// table, character for character, and the same bytes behind it.
//
// Accelerate's command takes only Hub model names (it asks the Hub for the
// model's metadata first) and these tests run offline, so the peer script
// answers that one call for a local folder and runs the rest of the command
// unchanged: transformers' AutoConfig and AutoModel on the meta device,
// calculate_maximum_sizes, the per-dtype rule and the table
// (tests/peer/scripts/estimate_memory_peer.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "accel_test_paths.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using accel::testing::run_peer_script;
using accel::testing::TempDir;
using nlohmann::json;

namespace {

const std::vector<std::string> kDtypes = {"float32", "float16", "int8", "int4"};

// A GPT-2 small enough to save in a moment, whose blocks (not the token
// embedding) are the largest layers.
const json kGpt2 = {{"model_type", "gpt2"}, {"vocab_size", 300}, {"n_positions", 64},
                    {"n_embd", 32},         {"n_layer", 3},      {"n_head", 4}};

class EstimateMemoryPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_PEERS("accelerate", "transformers", "torch");
    if (!fs::exists(accel_)) GTEST_FAIL() << "build the accel command first (" << accel_ << ")";
  }

  fs::path write_config(const std::string& name, const json& config) {
    fs::create_directories(dir_ / name);
    std::ofstream(dir_ / name / "config.json") << config.dump(2);
    return dir_ / name;
  }

  // What `accel estimate-memory <model> <extra...>` prints (stdout and stderr).
  std::string accel_output(const fs::path& model, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {accel_, "estimate-memory", model.string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto outcome = accel::testing::run_program(argv, dir_ / "accel.log");
    EXPECT_EQ(outcome.status, 0) << outcome.output;
    return outcome.output;
  }

  // Both commands on `model`: the tables equal, the rows equal to the byte.
  void expect_same_estimate(const fs::path& model, const json& peer, const json& peer_names) {
    SCOPED_TRACE(model.string());
    EXPECT_EQ(accel_output(model), peer["table"].get<std::string>());
    std::vector<std::string> flags = {"--json", "--dtypes"};
    flags.insert(flags.end(), kDtypes.begin(), kDtypes.end());
    const json ours = json::parse(accel_output(model, flags));
    ASSERT_EQ(ours["rows"].size(), peer["rows"].size());
    for (size_t i = 0; i < ours["rows"].size(); ++i) {
      const json& a = ours["rows"][i];
      const json& p = peer["rows"][i];
      EXPECT_EQ(a["dtype"], p["dtype"]);
      for (const char* column : {"largest_layer", "total_size", "training_using_adam"}) {
        if (p[column].is_null()) {
          EXPECT_TRUE(a[column].is_null()) << p["dtype"] << " " << column;
        } else {
          EXPECT_EQ(a[column].get<double>(), p[column].get<double>()) << p["dtype"] << " " << column;
        }
      }
    }
    EXPECT_EQ(ours["largest_layer_names"], peer_names);
  }

  std::string dtypes_arg() const {
    std::string out;
    for (const auto& d : kDtypes) out += (out.empty() ? "" : ",") + d;
    return out;
  }

  TempDir dir_{"estimate_peer"};
  std::string accel_ = std::string(ACCEL_BINARY_DIR) + "/accel";
};

TEST_F(EstimateMemoryPeer, FromAConfigAloneAsAccelerateBuildsTheModel) {
  json cross = kGpt2;
  cross.update({{"vocab_size", 50}, {"add_cross_attention", true}, {"n_inner", 48}});
  const std::vector<fs::path> models = {
      write_config("gpt2", kGpt2),
      write_config("gpt2_cross", cross),
      // Grouped-query attention, biases everywhere.
      write_config("llama", {{"model_type", "llama"},
                             {"vocab_size", 64},
                             {"hidden_size", 32},
                             {"intermediate_size", 40},
                             {"num_hidden_layers", 2},
                             {"num_attention_heads", 4},
                             {"num_key_value_heads", 2},
                             {"attention_bias", true},
                             {"mlp_bias", true}}),
      // Llama 3's rotary scaling, and heads wider than hidden_size / heads.
      write_config("llama3", {{"model_type", "llama"},
                              {"vocab_size", 64},
                              {"hidden_size", 32},
                              {"intermediate_size", 40},
                              {"num_hidden_layers", 2},
                              {"num_attention_heads", 4},
                              {"head_dim", 16},
                              {"max_position_embeddings", 256},
                              {"rope_theta", 500000.0},
                              {"rope_scaling",
                               {{"rope_type", "llama3"},
                                {"factor", 8.0},
                                {"low_freq_factor", 1.0},
                                {"high_freq_factor", 4.0},
                                {"original_max_position_embeddings", 64}}}}),
  };
  std::vector<std::string> args = {"estimate", dtypes_arg()};
  for (const auto& m : models) args.push_back(m.string());
  const json peer = run_peer_script("estimate_memory_peer.py", args);
  for (const auto& m : models) {
    const json& p = peer[m.string()];
    expect_same_estimate(m, p, p["largest_layer_names"]);
  }
}

TEST_F(EstimateMemoryPeer, FromTheSafetensorsHeadersOfASavedModel) {
  // transformers saves GPT2LMHeadModel in float16, sharded, with its tied
  // head left out. accel reads the shards' headers; Accelerate builds the
  // model from the folder's config.json. Same sizes (float32, the tied head
  // counted once), and the layer names of the model that was saved.
  const fs::path model = write_config("saved", kGpt2);
  const json saved = run_peer_script("estimate_memory_peer.py", {"save", model.string(), "50KB"});
  ASSERT_TRUE(fs::exists(model / "model.safetensors.index.json"));
  const json peer = run_peer_script("estimate_memory_peer.py", {"estimate", dtypes_arg(), model.string()});
  expect_same_estimate(model, peer[model.string()], saved["largest_layer_names"]);
  const json ours = json::parse(accel_output(model, {"--json"}));
  EXPECT_EQ(ours["source"], (model / "model.safetensors.index.json").string());
}

}  // namespace
