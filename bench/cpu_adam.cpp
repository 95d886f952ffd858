// CPU Adam throughput: parameters updated per second on one flat fp32 slice
// (default 50 M), for accel's cpu_adam_step with fp32 and with bf16
// gradients (and with a bf16 copy of the parameters written for the
// device), LibTorch's torch::optim::AdamW step on the CPU (per-tensor ops)
// and ATen's fused CPU kernel (_fused_adamw_, PyTorch's AdamW(fused=True)),
// against the machine's copy bandwidth measured here: a[i] = b[i] over the
// same threads, counted as bytes read + written.
//
//   bench_cpu_adam [--numel N] [--repeat R] [--threads T]
//
// Prints one line per case: name, M params/s (best of R), GB/s moved (the
// bytes each update must read and write, below), % of copy bandwidth.
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

double copy_bandwidth(int64_t n, int repeat) {
  auto src = torch::rand({n});
  auto dst = torch::zeros({n});
  const float* s = src.data_ptr<float>();
  float* d = dst.data_ptr<float>();
  const double t = best_of(repeat, [&] {
    at::parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = s[i];
    });
  });
  return 2.0 * 4.0 * static_cast<double>(n) / t / 1e9;
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
  const double copy_gbs = copy_bandwidth(n, repeat);
  std::printf("%-28s %9s %13.2f GB/s\n", "copy bandwidth", "", copy_gbs);

  auto g = at::detail::createCPUGenerator(0);
  auto param = torch::randn({n}, g), grad = torch::randn({n}, g) * 1e-2;
  auto grad16 = grad.to(torch::kBFloat16);
  auto m = torch::zeros({n}), v = torch::zeros({n});
  auto copy16 = torch::empty({n}, torch::kBFloat16);
  auto o = accel::CpuAdamOptions(1e-3).weight_decay(0.01);
  int64_t step = 0;
  auto accel_case = [&](const torch::Tensor& gr, const torch::Tensor& copy) {
    accel::cpu_adam_step(o, ++step, {param, gr, m, v, {}, copy});  // warm-up
    return best_of(repeat, [&] { accel::cpu_adam_step(o, ++step, {param, gr, m, v, {}, copy}); });
  };
  report("accel cpu_adam fp32 grads", n, accel_case(grad, {}), 28, copy_gbs);
  report("accel cpu_adam bf16 grads", n, accel_case(grad16, {}), 26, copy_gbs);
  report("accel bf16 grads+bf16 copy", n, accel_case(grad16, copy16), 28, copy_gbs);

  {  // ATen's fused CPU kernel, as PyTorch's AdamW(fused=True) calls it.
    auto steps = torch::zeros({});
    std::vector<torch::Tensor> ps{param}, gs{grad}, ms{m}, vs{v}, none, st{steps};
    auto run = [&] {
      steps.add_(1);
      at::_fused_adamw_(ps, gs, ms, vs, none, st, 1e-3, 0.9, 0.999, 0.01, 1e-8, false, false);
    };
    run();
    report("ATen _fused_adamw_ (CPU)", n, best_of(repeat, run), 28, copy_gbs);
  }
  {  // LibTorch's AdamW: about ten whole-tensor ops per step.
    auto p = param.clone().requires_grad_();
    p.mutable_grad() = grad.clone();
    torch::optim::AdamW opt({p}, torch::optim::AdamWOptions(1e-3).weight_decay(0.01));
    opt.step();
    report("torch::optim::AdamW (CPU)", n, best_of(std::max(1, repeat / 3), [&] { opt.step(); }), 28, copy_gbs);
  }
  return 0;
}
