// Parameter sharding driven by Accelerate's own config files, unchanged:
// `accel launch --config_file` with FSDP configs of fsdp_version 1 and 2
// (FULL_SHARD, GPT2Block wrapping; the second with CPU offload and
// activation checkpointing) and a DeepSpeed ZeRO stage-3 JSON, each written
// by Accelerate 1.15's config code (scripts/fsdp_train_configs.py), train
// the GPT-2 example on two CPU processes with its parameters sharded, step
// by step to the same losses as plain data parallelism (DDP) from the same
// seed, and save the same model (gathered), which transformers loads.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/dist/launcher.h"
#include "accel_test_paths.h"
#include "support/files.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
namespace st = accel::safetensors;
using accel::testing::binary_path;
using accel::testing::command_output;
using accel::testing::Outcome;
using accel::testing::peer_script;
using accel::testing::run_program;
using accel::testing::TempDir;

class FsdpLaunchPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_PEERS("torch", "accelerate");
    const std::string cmd = std::string(ACCEL_PYTHON) + " " + peer_script("fsdp_train_configs.py") + " " +
                            dir_.path().string() + " " + std::to_string(accel::find_free_port());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    // Text the model can learn in a few steps (its bytes are the tokens).
    std::ofstream text(dir_ / "text.txt");
    for (int i = 0; i < 400; ++i) text << "the quick brown fox jumps over the lazy dog. ";
  }

  // The GPT-2 example (tiny, fp32, no dropout) under `accel launch LAUNCH...`.
  Outcome train(const std::string& name, std::vector<std::string> launch) {
    std::vector<std::string> argv = {binary_path("accel"), "launch"};
    argv.insert(argv.end(), launch.begin(), launch.end());
    for (const char* a : {"--config", "tiny", "--steps", "4", "--batch", "2", "--seq", "32", "--dropout", "0",
                          "--mixed-precision", "no", "--clip", "0.5", "--lr", "0.003", "--warmup", "0"})
      argv.emplace_back(a);
    argv.push_back("--data");
    argv.push_back((dir_ / "text.txt").string());
    argv.push_back("--save");
    argv.push_back((dir_ / (name + "_model")).string());
    argv.insert(argv.begin() + 2 + launch.size(), binary_path("examples/gpt2"));
    return run_program(argv, dir_ / (name + ".log"), {.env = {{"CUDA_VISIBLE_DEVICES", ""}}});
  }

  // The losses the example printed ("step k/n  loss x ...").
  static std::vector<double> losses(const std::string& output) {
    std::vector<double> out;
    static const std::regex line(R"(step \d+/\d+\s+loss ([-+0-9.eE]+))");
    for (std::sregex_iterator it(output.begin(), output.end(), line), end; it != end; ++it)
      out.push_back(std::stod((*it)[1].str()));
    return out;
  }

  void expect_like_ddp(const std::string& name) {
    const Outcome ddp = train("ddp", {"--cpu", "--num_processes", "2", "--main_process_port", "0"});
    ASSERT_EQ(ddp.status, 0) << ddp.output;
    EXPECT_EQ(ddp.output.find("parameters sharded"), std::string::npos) << ddp.output;
    const Outcome sharded = train(name, {"--config_file", (dir_ / (name + ".yaml")).string()});
    ASSERT_EQ(sharded.status, 0) << sharded.output;
    EXPECT_NE(sharded.output.find("parameters sharded across 2 processes"), std::string::npos) << sharded.output;
    const auto want = losses(ddp.output), got = losses(sharded.output);
    ASSERT_EQ(want.size(), 4u) << ddp.output;
    ASSERT_EQ(got.size(), want.size()) << sharded.output;
    EXPECT_GT(want.front() - want.back(), 0.05) << "the model learns";
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 2e-4) << "step " << i + 1;
    // The sharded run saved the whole model (gathered unit by unit), as DDP's, and transformers loads it.
    const auto ddp_model = st::load_file(dir_ / "ddp_model" / "model.safetensors");
    const auto sharded_model = st::load_file(dir_ / (name + "_model") / "model.safetensors");
    ASSERT_EQ(sharded_model.size(), ddp_model.size());
    for (const auto& item : ddp_model) {
      const auto* t = sharded_model.find(item.key());
      ASSERT_NE(t, nullptr) << item.key();
      EXPECT_LT((*t - item.value()).abs().max().item<double>(), 1e-4) << item.key();
    }
    const std::string load = std::string(ACCEL_PYTHON) +
                             " -c 'import sys; from transformers import GPT2LMHeadModel; "
                             "GPT2LMHeadModel.from_pretrained(sys.argv[1]); print(\"loaded\")' " +
                             (dir_ / (name + "_model")).string() + " 2>&1";
    EXPECT_NE(command_output(load).find("loaded"), std::string::npos) << load;
  }

  TempDir dir_{"fsdp_launch"};
};

TEST_F(FsdpLaunchPeer, FsdpVersion1FullShardConfigTrainsLikeDdp) { expect_like_ddp("fsdp1"); }

TEST_F(FsdpLaunchPeer, FsdpVersion2OffloadAndCheckpointingConfigTrainsLikeDdp) { expect_like_ddp("fsdp2"); }

TEST_F(FsdpLaunchPeer, DeepSpeedZero3JsonTrainsLikeDdp) { expect_like_ddp("zero3"); }

}  // namespace
