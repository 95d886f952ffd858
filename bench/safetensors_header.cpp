// Opening safetensors files with many tensors: the JSON header parse and
// the per-name lookups must be linear in the number of tensors (a 10 MB
// header, ~180k tensors, once took minutes). bench/safetensors_header.sh
// runs it beside Python's safe_open on the same files.
//
//   bench_safetensors_header DIR N...    writes DIR/N.safetensors for each N
//                                        (N one-element F32 tensors) if missing,
//                                        then times them
//
// Each line of output is "<N> <header MB> <open s> <get-all s>":
//   open     safetensors::File(path): the header parsed and indexed
//   get-all  open, then File::get of every tensor by name
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <torch/torch.h>

#include "accel/checkpoint/safetensors.h"

namespace st = accel::safetensors;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string tensor_name(int i) { return "model.layers." + std::to_string(i) + ".weight"; }

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_safetensors_header DIR N...\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  for (int a = 2; a < argc; ++a) {
    const int n = std::stoi(argv[a]);
    const auto path = dir / (std::to_string(n) + ".safetensors");
    if (!std::filesystem::exists(path)) {
      st::NamedTensors tensors;
      tensors.reserve(n);
      for (int i = 0; i < n; ++i) tensors.emplace_back(tensor_name(i), torch::full({1}, static_cast<float>(i)));
      st::save_file(tensors, path);
    }
    double best_open = 1e9, best_all = 1e9;
    uint64_t header = 0;
    for (int repeat = 0; repeat < 3; ++repeat) {
      double t0 = now();
      st::File file(path);
      best_open = std::min(best_open, now() - t0);
      header = file.header().header_size;
      t0 = now();
      st::File again(path);
      double sum = 0;
      for (int i = 0; i < n; ++i) sum += again.get(tensor_name(i)).item<float>();
      best_all = std::min(best_all, now() - t0);
      if (sum != static_cast<double>(n) * (n - 1) / 2) throw std::runtime_error("wrong values read back");
    }
    std::printf("%d %.2f %.4f %.4f\n", n, static_cast<double>(header) / 1e6, best_open, best_all);
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_safetensors_header: %s\n", e.what());
  return 1;
}
