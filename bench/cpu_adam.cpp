// CPU Adam throughput: parameters updated per second on one flat fp32 slice
// (default 50 M), for accel's cpu_adam_step with fp32 and with bf16
// gradients (and with a bf16 copy of the parameters written for the
// device), LibTorch's torch::optim::AdamW step on the CPU (per-tensor ops)
// and ATen's fused CPU kernel (_fused_adamw_, PyTorch's AdamW(fused=True)),
// against the machine's memory bandwidth measured here over the same
// threads (memcpy, ATen's copy_, ATen's in-place add_; bytes read + written).
//
//   bench_cpu_adam [--numel N] [--repeat R] [--threads T]
//
// Prints one line per case: name, M params/s (best of R rounds over all
// cases), GB/s moved (the bytes each update must read and write, below), and
// that as a % of the best bandwidth measure (above 100 % where Adam's seven
// streams get more from the memory system than a copy's two or three do).
// Bytes per parameter: fp32 grads 28 (read p, m, v, g; write p, m, v),
// bf16 grads 26, bf16 grads + bf16 copy 28.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "accel/optim/cpu_adam.h"

namespace {

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double best_of(int repeat, const std::function<void()>& f) {
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) best = std::min(best, seconds_of(f));
  return best;
}

// What the memory system gives these threads, counted as bytes read +
// bytes written: memcpy (glibc; non-temporal stores for large copies, so no
// read-for-ownership traffic), ATen's copy_ (vectorised, all threads) and
// ATen's in-place add_ a += b (two streams read, one written back in place,
// as Adam's state is).
struct Bandwidth {
  double memcpy = 0, copy = 0, update = 0;
  double best() const { return std::max({memcpy, copy, update}); }
};

Bandwidth measure_bandwidth(int64_t n, int repeat) {
  auto a = torch::rand({n}), b = torch::rand({n});
  float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  Bandwidth bw;
  const double memcpy_s = best_of(repeat, [&] {
    at::parallel_for(0, n, 1 << 16, [&](int64_t s, int64_t e) { std::memcpy(pa + s, pb + s, (e - s) * 4); });
  });
  const double copy_s = best_of(repeat, [&] { a.copy_(b); });
  const double update_s = best_of(repeat, [&] { a.add_(b); });
  const double elems = static_cast<double>(n);
  bw.memcpy = 8.0 * elems / memcpy_s / 1e9;
  bw.copy = 8.0 * elems / copy_s / 1e9;
  bw.update = 12.0 * elems / update_s / 1e9;
  return bw;
}

void report(const char* name, int64_t n, double seconds, double bytes_per_param, double copy_gbs) {
  const double params = static_cast<double>(n) / seconds;
  const double gbs = params * bytes_per_param / 1e9;
  std::printf("%-28s %9.1f M/s %7.2f GB/s %6.1f %%\n", name, params / 1e6, gbs, 100.0 * gbs / copy_gbs);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 50'000'000;
  int repeat = 10;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--numel")
      n = std::atoll(argv[i + 1]);
    else if (a == "--repeat")
      repeat = std::atoi(argv[i + 1]);
    else if (a == "--threads")
      threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--numel N] [--repeat R] [--threads T]\n", argv[0]);
      return 2;
    }
  }
  if (threads > 0) at::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  std::printf("# numel %lld, threads %d, isa %s, best of %d\n", static_cast<long long>(n), at::get_num_threads(),
              accel::cpu_adam_isa().c_str(), repeat);
  const Bandwidth bw = measure_bandwidth(n, repeat);
  std::printf("%-28s %9s %13.2f GB/s\n", "bandwidth: memcpy", "", bw.memcpy);
  std::printf("%-28s %9s %13.2f GB/s\n", "bandwidth: ATen copy_", "", bw.copy);
  std::printf("%-28s %9s %13.2f GB/s\n", "bandwidth: ATen a.add_(b)", "", bw.update);
  const double copy_gbs = bw.best();

  auto g = at::detail::createCPUGenerator(0);
  auto param = torch::randn({n}, g), grad = torch::randn({n}, g) * 1e-2;
  auto grad16 = grad.to(torch::kBFloat16);
  auto m = torch::zeros({n}), v = torch::zeros({n});
  auto copy16 = torch::empty({n}, torch::kBFloat16);
  auto o = accel::CpuAdamOptions(1e-3).weight_decay(0.01);
  int64_t step = 0;
  // ATen's fused CPU kernel, as PyTorch's AdamW(fused=True) calls it.
  auto steps = torch::zeros({});
  std::vector<torch::Tensor> ps{param}, gs{grad}, ms{m}, vs{v}, none, st{steps};
  // LibTorch's AdamW: about ten whole-tensor ops per step.
  auto p = param.clone().requires_grad_();
  p.mutable_grad() = grad.clone();
  torch::optim::AdamW libtorch_adamw({p}, torch::optim::AdamWOptions(1e-3).weight_decay(0.01));

  struct Case {
    const char* name;
    double bytes;  // per parameter
    std::function<void()> run;
    double best = 1e30;
  };
  std::vector<Case> cases = {
      {"accel cpu_adam fp32 grads", 28,
       [&] {
         accel::cpu_adam_step(o, ++step, {param, grad, m, v});
       }},
      {"accel cpu_adam bf16 grads", 26,
       [&] {
         accel::cpu_adam_step(o, ++step, {param, grad16, m, v});
       }},
      {"accel bf16 grads+bf16 copy", 28,
       [&] {
         accel::cpu_adam_step(o, ++step, {param, grad16, m, v, {}, copy16});
       }},
      {"ATen _fused_adamw_ (CPU)", 28,
       [&] {
         steps.add_(1);
         at::_fused_adamw_(ps, gs, ms, vs, none, st, 1e-3, 0.9, 0.999, 0.01, 1e-8, false, false);
       }},
      {"torch::optim::AdamW (CPU)", 28, [&] { libtorch_adamw.step(); }},
  };
  for (auto& c : cases) c.run();  // warm-up: first touch, lazy state
  // Rounds over all cases, best per case: a busy neighbour slows every case
  // alike instead of whichever ran while it was busy.
  for (int r = 0; r < repeat; ++r)
    for (auto& c : cases) c.best = std::min(c.best, seconds_of(c.run));
  for (const auto& c : cases) report(c.name, n, c.best, c.bytes, copy_gbs);
  return 0;
}
