// Loader throughput: samples/s on a synthetic dataset whose get(i) costs
// real CPU work, for accel's loader with 0, 1, 2 worker threads and for
// LibTorch's torch::data loader on the same dataset (4, 8, ... workers too
// where the machine has the cores).
// With a GPU: the time a training loop whose step takes ~10 ms of GPU work
// waits on the loader per step (batches pinned, copied with non_blocking).
//
//   build/bench/bench_data_loader [samples=2048] [batch=32] [work=40] [gpu step ms=10]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "accel/data/data_loader.h"
#include "accel/data/prepare.h"

namespace {

int64_t g_work = 40;  // inner iterations per element: the cost of get(i)

// A 3x32x32 "image" computed element by element (like decoding and
// augmenting a sample), plus its label.
torch::Tensor synth(int64_t index) {
  auto t = torch::empty({3, 32, 32});
  float* p = t.data_ptr<float>();
  for (int64_t e = 0; e < t.numel(); ++e) {
    float v = static_cast<float>(index + e);
    for (int64_t k = 0; k < g_work; ++k) v = std::sin(v) * 1.0001f + 0.5f;
    p[e] = v;
  }
  return t;
}

struct TorchSynth : torch::data::datasets::Dataset<TorchSynth> {
  explicit TorchSynth(int64_t n) : n_(n) {}
  torch::data::Example<> get(size_t index) override {
    return {synth(static_cast<int64_t>(index)), torch::tensor(static_cast<int64_t>(index) % 10)};
  }
  torch::optional<size_t> size() const override { return n_; }
  int64_t n_;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double bench_accel(int64_t n, int64_t batch, int64_t workers) {
  auto ds = accel::make_dataset(n, [](int64_t i) {
    return accel::TensorDict{{"x", synth(i)}, {"y", torch::tensor(i % 10)}};
  });
  auto loader = accel::make_data_loader(ds, accel::DataLoaderOptions(batch).num_workers(workers));
  auto t0 = Clock::now();
  int64_t seen = 0;
  for (auto& b : loader) seen += b["x"].size(0);
  return seen / seconds_since(t0);
}

double bench_torch(int64_t n, int64_t batch, int64_t workers) {
  auto ds = TorchSynth(n).map(torch::data::transforms::Stack<>());
  auto loader = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      std::move(ds), torch::data::DataLoaderOptions().batch_size(batch).workers(workers));
  auto t0 = Clock::now();
  int64_t seen = 0;
  for (auto& b : *loader) seen += b.data.size(0);
  return seen / seconds_since(t0);
}

// A GPU step of about `step_ms`: a chain of matmuls on the batch, sized once
// by timing it.
struct GpuStep {
  explicit GpuStep(double step_ms) : w(torch::randn({3072, 3072}, torch::kCUDA)) {
    auto x = torch::randn({32, 3072}, torch::kCUDA);
    run(x, 50);  // warm-up
    torch::cuda::synchronize();
    auto t0 = Clock::now();
    run(x, 200);
    torch::cuda::synchronize();
    const double per_matmul_ms = 1e3 * seconds_since(t0) / 200;
    matmuls = std::max<int64_t>(1, static_cast<int64_t>(step_ms / per_matmul_ms));
  }
  void run(torch::Tensor x, int64_t k) const {
    for (int64_t i = 0; i < k; ++i) x = torch::tanh(x.matmul(w));
  }
  void operator()(const torch::Tensor& batch) const { run(batch.reshape({-1, 3072}), matmuls); }
  torch::Tensor w;
  int64_t matmuls = 1;
};

// Per step of a GPU training loop: the time spent waiting for the next
// batch (pinned, copied with non_blocking) after the step's GPU work is
// done, the first batch excluded (the loader starts cold).
void bench_gpu_wait(int64_t n, int64_t batch, int64_t workers, const GpuStep& step) {
  auto ds = accel::make_dataset(n, [](int64_t i) { return accel::TensorDict{{"x", synth(i)}}; });
  auto loader = accel::prepare_data_loader(
      accel::make_data_loader(ds, accel::DataLoaderOptions(batch).num_workers(workers).pin_memory(true)),
      accel::PrepareOptions().num_processes(1).process_index(0).device(torch::Device(torch::kCUDA)).non_blocking(true));
  std::vector<double> waits;
  auto t_all = Clock::now();
  auto it = loader.begin();
  while (it != loader.end()) {
    step((*it)["x"]);
    torch::cuda::synchronize();
    auto t0 = Clock::now();
    ++it;
    waits.push_back(1e3 * seconds_since(t0));
  }
  const double total = seconds_since(t_all);
  waits.pop_back();  // the end-of-loader check, not a batch
  double sum = 0, worst = 0;
  for (double w : waits) sum += w, worst = std::max(worst, w);
  std::printf("| %ld | %.3f | %.3f | %.0f |\n", static_cast<long>(workers), sum / waits.size(), worst, n / total);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 2048;
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 32;
  if (argc > 3) g_work = std::atoll(argv[3]);
  const double step_ms = argc > 4 ? std::atof(argv[4]) : 10.0;
  torch::set_num_threads(1);  // the loaders' threads are what is measured
  std::printf("%ld samples, batch %ld, get(i) = %ld sin() per element of a 3x32x32 tensor\n\n", static_cast<long>(n),
              static_cast<long>(batch), static_cast<long>(g_work));
  // More workers only where there are cores for them.
  std::vector<int64_t> workers = {0, 1, 2};
  for (int64_t w = 4; w <= static_cast<int64_t>(std::thread::hardware_concurrency()) / 2; w *= 2) workers.push_back(w);
  std::printf("| loader | workers | samples/s |\n|---|---|---|\n");
  for (int64_t w : workers) {
    std::printf("| accel | %ld | %.0f |\n", static_cast<long>(w), bench_accel(n, batch, w));
    std::printf("| torch::data | %ld | %.0f |\n", static_cast<long>(w), bench_torch(n, batch, w));
  }
  if (torch::cuda::is_available()) {
    const GpuStep step(step_ms);
    std::printf("\nGPU loop, a step of %.0f ms of matmuls per batch: wait for the next batch after each step\n\n",
                step_ms);
    std::printf("| workers | mean wait, ms | worst wait, ms | samples/s |\n|---|---|---|---|\n");
    for (int64_t w : workers) bench_gpu_wait(n, batch, w, step);
  }
  return 0;
}
