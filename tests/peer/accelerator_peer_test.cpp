// The same training by Accelerate 1.15 (Python, 2 processes on CPU under
// `accelerate launch`) and by accel (2 processes over Gloo): the same initial
// weights and batches, DDP, AdamW, a linear warmup schedule, gradient
// accumulation 2 and clipping. The final weights agree within 1e-5 and the
// learning rate after every optimizer step is equal.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/optim/schedules.h"
#include "support/distributed.h"
#include "support/peers.h"
#include "support/programs.h"
#include "support/temp_dir.h"

using namespace accel;
using accel::testing::peer_script;
using accel::testing::run_shell;
using accel::testing::TempDir;
using accel::testing::venv_program;

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(6, 16));
    fc2 = register_module("fc2", torch::nn::Linear(16, 3));
  }
  torch::Tensor forward(torch::Tensor x) { return fc2(torch::tanh(fc1(x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Net);

constexpr int kBatch = 4, kAccumulation = 2, kWarmup = 2, kTotal = 20;
constexpr double kClip = 0.5, kLr = 0.01;

}  // namespace

TEST(AcceleratorPeer, TrainsLikeAccelerate) {
  REQUIRE_PEERS("torch", "accelerate", "safetensors", "transformers");
  const TempDir dir("accelerator_peer");
  const auto input = dir / "input.safetensors";
  {
    // CPU generators only: this process forks the accel ranks later.
    auto g = at::detail::createCPUGenerator(5);
    Net net;
    safetensors::NamedTensors t;
    for (auto& item : net->named_parameters()) t.emplace_back(item.key(), torch::randn(item.value().sizes(), g) * 0.3);
    t.emplace_back("x", torch::randn({96, 6}, g));
    t.emplace_back("y", torch::randint(0, 3, {96}, g));
    safetensors::save_file(t, input);
  }
  const auto peer_out = (dir / "peer").string();
  const std::string cmd = "cd " + dir.path().string() + " && env HF_HOME=" + dir.path().string() +
                          " CUDA_VISIBLE_DEVICES= " + venv_program("accelerate") +
                          " launch --multi_gpu --num_processes 2 --main_process_port " +
                          std::to_string(find_free_port()) + " " + peer_script("accelerate_train.py") + " " +
                          input.string() + " " + peer_out + " " + std::to_string(kBatch) + " " +
                          std::to_string(kAccumulation) + " " + std::to_string(kWarmup) + " " + std::to_string(kTotal) +
                          " " + std::to_string(kClip) + " " + std::to_string(kLr);
  const auto run = run_shell(cmd, dir / "peer.log");
  ASSERT_EQ(run.status, 0) << cmd << "\n" << run.output;
  const auto peer = nlohmann::json::parse(std::ifstream(peer_out + ".json"));
  ASSERT_EQ(peer["num_processes"], 2);
  const auto peer_weights = safetensors::load_file(peer_out + ".safetensors");

  accel::testing::run_distributed(2, [&] {
    auto tensors = safetensors::load_file(input);
    Net net;
    load_model_weights(*net, input, LoadModelOptions().strict(false));
    Accelerator acc(AcceleratorOptions().gradient_accumulation_steps(kAccumulation));
    auto opt = std::make_shared<torch::optim::AdamW>(
        net->parameters(), torch::optim::AdamWOptions(kLr).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.01));
    auto sched = get_scheduler(SchedulerType::linear, *opt, kWarmup, kTotal);
    auto data = make_data_loader(std::make_shared<TensorDataset>(TensorDict{{"x", tensors["x"]}, {"y", tensors["y"]}}),
                                 DataLoaderOptions(kBatch));
    auto [model, optimizer, loader, scheduler] = acc.prepare(net, opt, data, sched);
    std::vector<double> lrs, norms;
    for (auto& b : loader) {
      auto scope = acc.accumulate(model);
      acc.backward(torch::nn::functional::cross_entropy(model(b["x"]), b["y"]));
      if (acc.sync_gradients()) norms.push_back(acc.clip_grad_norm_(net->parameters(), kClip).item<double>());
      optimizer->step();
      scheduler->step();
      optimizer->zero_grad();
      if (acc.sync_gradients()) lrs.push_back(scheduler->get_last_lr()[0]);
    }
    const auto peer_lrs = peer["lrs"].get<std::vector<double>>();
    ASSERT_EQ(lrs.size(), peer_lrs.size());
    ASSERT_EQ(lrs.size(), 6u);
    for (size_t i = 0; i < lrs.size(); ++i) EXPECT_DOUBLE_EQ(lrs[i], peer_lrs[i]) << "optimizer step " << i;
    const auto peer_norms = peer["norms"].get<std::vector<double>>();
    ASSERT_EQ(norms.size(), peer_norms.size());
    for (size_t i = 0; i < norms.size(); ++i) EXPECT_NEAR(norms[i], peer_norms[i], 1e-5) << "optimizer step " << i;
    for (auto& item : net->named_parameters()) {
      const auto* peer_value = peer_weights.find(item.key());
      ASSERT_NE(peer_value, nullptr) << item.key();
      EXPECT_LT((item.value() - *peer_value).abs().max().item<double>(), 1e-5) << item.key();
    }
  });
}
