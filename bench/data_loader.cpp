// Loader throughput: samples/s on a synthetic dataset whose get(i) costs
// real CPU work, for accel's loader with 0, 1, 2 worker threads and for
// LibTorch's torch::data loader (0, 1, 2 workers) on the same dataset.
// With a GPU: the time a training step waits on the loader (batches pinned,
// copied with non_blocking).
//
//   build/bench/bench_data_loader [samples=2048] [batch=32] [work=40]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

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

// Per step: the time spent waiting for the next batch while a GPU step of
// ~`step_ms` runs.
void bench_gpu_wait(int64_t n, int64_t batch, int64_t workers) {
  auto ds = accel::make_dataset(n, [](int64_t i) { return accel::TensorDict{{"x", synth(i)}}; });
  auto loader = accel::prepare_data_loader(
      accel::make_data_loader(ds, accel::DataLoaderOptions(batch).num_workers(workers).pin_memory(true)),
      accel::PrepareOptions().num_processes(1).process_index(0).device(torch::Device(torch::kCUDA)).non_blocking(true));
  auto w = torch::randn({3072, 3072}, torch::kCUDA);
  double waited = 0;
  int64_t steps = 0;
  auto it = loader.begin();
  while (it != loader.end()) {
    auto x = (*it)["x"].reshape({-1, 3072});
    for (int k = 0; k < 20; ++k) x = torch::tanh(x.matmul(w));
    torch::cuda::synchronize();
    auto t0 = Clock::now();
    ++it;
    waited += seconds_since(t0);
    ++steps;
  }
  std::printf("| gpu step, %ld workers | %.3f ms waiting per step (%ld steps) |\n", static_cast<long>(workers),
              1e3 * waited / steps, static_cast<long>(steps));
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 2048;
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 32;
  if (argc > 3) g_work = std::atoll(argv[3]);
  torch::set_num_threads(1);  // the loaders' threads are what is measured
  std::printf("%ld samples, batch %ld, get(i) = %ld sin() per element of a 3x32x32 tensor\n\n", static_cast<long>(n),
              static_cast<long>(batch), static_cast<long>(g_work));
  std::printf("| loader | workers | samples/s |\n|---|---|---|\n");
  for (int64_t w : {0, 1, 2}) {
    std::printf("| accel | %ld | %.0f |\n", static_cast<long>(w), bench_accel(n, batch, w));
    std::printf("| torch::data | %ld | %.0f |\n", static_cast<long>(w), bench_torch(n, batch, w));
  }
  if (torch::cuda::is_available())
    for (int64_t w : {0, 2, 4}) bench_gpu_wait(n, batch, w);
  return 0;
}
