// The Trainer on a GPU (label gpu): auto_find_batch_size recovers from a
// real CUDA out-of-memory error (a forward that asks for more than the
// device's free memory above a batch size) and ends with the weights of a
// plain run at the batch it found; torch_compile (the step captured as a
// CUDA graph and replayed) gives the eager run's losses and weights, and
// its host code runs only for the warm-up and the capture.
#include <algorithm>
#include <memory>
#include <vector>

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "accel/trainer/trainer.h"
#include "support/cuda.h"
#include "support/temp_dir.h"
#include "support/trainer_model.h"

using namespace accel;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<Dataset<TensorDict>> rows() {
  torch::manual_seed(3);
  auto x = torch::randn({36, 8});
  auto y = torch::sin(x.mm(torch::randn({8, 4})));
  return std::make_shared<LambdaDataset<TensorDict>>(36, [x, y](int64_t i) {
    return TensorDict{{"x", x[i]}, {"labels", y[i]}};
  });
}

// A forward that asks for `share` of the device's free memory per example,
// measured at each forward with the allocator's cache emptied: a batch size
// then fails at its first forward or at none. (A fixed number of bytes
// could fit at the first step and fail at a later one, after cuBLAS's
// workspace or the optimizer state split the cached block: the attempt
// would have stepped the weights before the restart, as Transformers'
// would.)
struct GreedyImpl : torch::nn::Module {
  torch::nn::Linear fc{nullptr};
  double share;
  std::shared_ptr<std::vector<int64_t>> out_of_memory = std::make_shared<std::vector<int64_t>>();
  std::shared_ptr<std::vector<int64_t>> calls = std::make_shared<std::vector<int64_t>>();  // each forward's batch
  explicit GreedyImpl(double s) : share(s) { fc = register_module("fc", torch::nn::Linear(8, 4)); }
  torch::Tensor forward(const TensorDict& b) {
    const int64_t batch = b.at("x").size(0);
    calls->push_back(batch);
    c10::cuda::CUDACachingAllocator::emptyCache();
    size_t free_bytes = 0, total = 0;
    TORCH_CHECK(cudaMemGetInfo(&free_bytes, &total) == cudaSuccess, "cudaMemGetInfo failed");
    const auto per_example = static_cast<int64_t>(static_cast<double>(free_bytes) * share);
    try {
      auto scratch = torch::empty({batch * per_example}, b.at("x").options().dtype(torch::kUInt8));
    } catch (const c10::OutOfMemoryError&) {
      out_of_memory->push_back(batch);
      throw;
    }
    return torch::mse_loss(fc(b.at("x")), b.at("labels"));
  }
};
TORCH_MODULE(Greedy);

TrainingArguments gpu_args(const fs::path& out, int64_t batch) {
  return TrainingArguments()
      .output_dir(out.string())
      .per_device_train_batch_size(batch)
      .max_steps(9)
      .learning_rate(1e-2)
      .logging_steps(1)
      .save_strategy(IntervalStrategy::no)
      .disable_tqdm(true);
}

}  // namespace

TEST(TrainerGpu, AutoFindBatchSizeRecoversFromCudaOutOfMemory) {
  REQUIRE_CUDA();
  accel::testing::TempDir dir("trainer_gpu_auto_batch");
  // Batches of 4 and 3 ask for 1.6 and 1.2 times the free memory, 2 for
  // 0.8 and 1 for 0.4. Whether one allocation of 0.8 of the free memory
  // succeeds depends on the card (on an H200 it did not), so the test takes
  // the first batch that fit, which must follow the last failure by the
  // 0.9 shrink.
  const double share = 1 / 2.5;
  torch::manual_seed(1);
  Greedy found(share);
  Trainer a(found, gpu_args(dir.path() / "auto", 4).auto_find_batch_size(true), rows());
  a.train();
  const auto& oom = *found->out_of_memory;
  ASSERT_GE(oom.size(), 2u);
  ASSERT_LE(oom.size(), 3u);
  EXPECT_EQ(oom[0], 4);
  EXPECT_EQ(oom[1], 3);
  if (oom.size() == 3) EXPECT_EQ(oom[2], 2);
  // Each failing batch size failed at its attempt's first forward: no
  // attempt stepped the weights before its restart.
  for (const auto failed : oom) EXPECT_EQ(std::count(found->calls->begin(), found->calls->end(), failed), 1) << failed;
  const int64_t fit = static_cast<int64_t>(static_cast<double>(oom.back()) * 0.9);
  EXPECT_EQ(a.state().train_batch_size, fit);

  torch::manual_seed(1);
  Greedy plain(share);
  Trainer b(plain, gpu_args(dir.path() / "plain", fit), rows());
  b.train();
  EXPECT_TRUE(plain->out_of_memory->empty());
  // Not bit for bit as on the CPU (trainer_auto_batch_test): the restarted
  // run's cuBLAS calls need not pick the plain run's algorithms, so fp32
  // sums may round differently; another batch order, or a step taken by a
  // failed attempt, would move them far more (1e-2 learning rate, 9 steps).
  std::string forwards;
  for (auto c : *found->calls) forwards += std::to_string(c) + " ";
  for (const auto& p : plain->named_parameters())
    EXPECT_LT((p.value() - found->named_parameters()[p.key()]).abs().max().item<double>(), 1e-5)
        << p.key() << "; the found run's forwards, by batch: " << forwards;
}

TEST(TrainerGpu, TorchCompileGivesTheEagerLosses) {
  REQUIRE_CUDA();
  accel::testing::TempDir dir("trainer_gpu_compile");
  struct Run {
    std::vector<double> losses, grad_norms;
    std::vector<torch::Tensor> params;
    int64_t loss_calls = 0;
  };
  const auto run = [&](bool compile) {
    torch::manual_seed(1);
    accel::testing::TrainerMlp model;
    auto calls = std::make_shared<int64_t>(0);
    auto functions = ModelFunctions<accel::testing::TrainerMlp>().compute_loss([calls](auto& m, const TensorDict& b) {
      ++*calls;
      return torch::mse_loss(m->logits(b.at("x")), b.at("labels"));
    });
    Trainer t(model, gpu_args(dir.path() / (compile ? "compiled" : "eager"), 4).max_steps(18).torch_compile(compile),
              rows(), nullptr, functions);
    t.train();
    Run r;
    for (const auto& e : t.state().log_history) {
      if (!e.count("loss")) continue;
      r.losses.push_back(e.at("loss"));
      r.grad_norms.push_back(e.at("grad_norm"));
    }
    for (const auto& p : model->parameters()) r.params.push_back(p.detach().cpu());
    r.loss_calls = *calls;
    return r;
  };
  const Run eager = run(false), compiled = run(true);
  EXPECT_EQ(eager.loss_calls, 18);
  // 3 eager warm-up calls and the capture; the other 14 steps are replays.
  EXPECT_EQ(compiled.loss_calls, 4);
  ASSERT_EQ(compiled.losses.size(), 18u);
  ASSERT_EQ(eager.losses.size(), 18u);
  for (size_t s = 0; s < eager.losses.size(); ++s) {
    EXPECT_NEAR(compiled.losses[s], eager.losses[s], 1e-6) << "step " << s + 1;
    EXPECT_NEAR(compiled.grad_norms[s], eager.grad_norms[s], 1e-5) << "step " << s + 1;
  }
  for (size_t i = 0; i < eager.params.size(); ++i)
    EXPECT_TRUE(torch::allclose(compiled.params[i], eager.params[i], 1e-5, 1e-6)) << "parameter " << i;
}
