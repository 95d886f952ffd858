// save_state / load_state on one GPU (label gpu; skipped without CUDA):
// a run saved after k steps and continued by fresh objects that load the
// checkpoint ends bit-identical to the straight run, with dropout drawing
// from the CUDA generator and the fused AdamW step resuming its step counts.
#include <filesystem>
#include <optional>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/optim/schedules.h"
#include "support/cuda.h"
#include "support/temp_dir.h"
#include "support/tensors.h"

using namespace accel;
using accel::testing::expect_equal;
using accel::testing::TempDir;
namespace F = torch::nn::functional;
namespace fs = std::filesystem;

namespace {

struct Trainer {
  explicit Trainer(const std::string& precision) : acc(AcceleratorOptions().mixed_precision(precision)) {
    torch::manual_seed(9);
    net = torch::nn::Sequential(torch::nn::Linear(8, 64), torch::nn::Dropout(0.2), torch::nn::GELU(),
                                torch::nn::Linear(64, 4));
    auto opt = std::make_shared<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(3e-3));
    auto sched = get_scheduler("cosine", *opt, 2, 30);
    auto g = at::detail::createCPUGenerator(4);
    auto ds = std::make_shared<TensorDataset>(
        TensorDict{{"x", torch::randn({96, 8}, g)}, {"y", torch::randint(0, 4, {96}, g)}});
    auto [m, o, s, l] = acc.prepare(net, opt, sched, make_data_loader(ds, DataLoaderOptions(16).shuffle(true).seed(3)));
    model.emplace(std::move(m));
    optimizer = o;
    scheduler = s;
    loader.emplace(std::move(l));
  }
  void train(int steps) {
    int done = 0;
    while (done < steps)
      for (auto& b : *loader) {
        acc.backward(F::cross_entropy((*model)(b["x"]), b["y"]));
        optimizer->step();
        scheduler->step();
        optimizer->zero_grad();
        if (++done == steps) break;
      }
  }
  std::vector<torch::Tensor> snapshot() {
    std::vector<torch::Tensor> out;
    for (auto& p : net->parameters()) out.push_back(p.detach().cpu());
    for (auto& [name, t] : optimizer_state(optimizer->optimizer()).tensors) out.push_back(t);
    out.push_back(torch::rand({3}, torch::kCUDA).cpu());
    return out;
  }
  Accelerator acc;
  torch::nn::Sequential net{nullptr};
  std::optional<PreparedModel<torch::nn::Sequential>> model;
  std::shared_ptr<AcceleratedOptimizer> optimizer;
  std::shared_ptr<AcceleratedScheduler> scheduler;
  std::optional<DataLoader<TensorDict>> loader;
};

void expect_exact_resume(const std::string& precision) {
  const TempDir tmp("gpu_save_state");
  const fs::path dir = tmp / "ckpt";
  std::vector<torch::Tensor> straight;
  {
    Trainer t(precision);
    t.train(11);
    straight = t.snapshot();
  }
  {
    Trainer t(precision);
    t.train(5);
    t.acc.save_state(dir);
  }
  Trainer t(precision);
  t.acc.load_state(dir);
  t.train(6);
  auto resumed = t.snapshot();
  EXPECT_TRUE(safetensors::load_file(dir / "random_states_0.safetensors").contains("cuda:0"));
  expect_equal(resumed, straight, "the resumed run");
}

}  // namespace

TEST(GpuSaveState, ExactResumeFp32) {
  REQUIRE_CUDA();
  expect_exact_resume("no");
}

TEST(GpuSaveState, ExactResumeBf16) {
  REQUIRE_CUDA();
  expect_exact_resume("bf16");
}
