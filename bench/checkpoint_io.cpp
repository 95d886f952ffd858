// Save and load throughput of a multi-GB state dict through accel's
// safetensors files. bench/checkpoint_io.sh runs it beside dd (the disk's
// own sequential speed) and Python's safetensors, and prints a table.
//
//   bench_checkpoint_io [--dir DIR] [--gb 2] [--tensors 256] [--repeat 2]
//
// Each line of output is "<measure> <seconds> <GB/s>" (GB = 10^9 bytes):
//   save        save_file: write + fsync + rename (what a checkpoint costs)
//   load_cold   load_file into preallocated tensors after the file's pages
//               were dropped from the page cache (what a restart costs)
//   load_warm   the same with the file in the page cache (memory bound)
//   map_cold    load_file alone (mapping, no copy): the zero-copy open
//   gpu_cold    load_file(path, kCUDA) until the tensors are on the GPU,
//   gpu_warm    cold and warm cache (with a GPU only)
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "accel/checkpoint/safetensors.h"

namespace st = accel::safetensors;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Drops the file's clean pages from the page cache (no root needed).
void evict(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open " + path.string());
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void report(const char* what, double seconds, double bytes) {
  std::printf("%-10s %8.3f %8.3f\n", what, seconds, bytes / seconds / 1e9);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / "accel_checkpoint_io";
  double gb = 2;
  int count = 256;
  int repeat = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--dir")
      dir = argv[i + 1];
    else if (flag == "--gb")
      gb = std::atof(argv[i + 1]);
    else if (flag == "--tensors")
      count = std::atoi(argv[i + 1]);
    else if (flag == "--repeat")
      repeat = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  torch::set_num_threads(1);  // copies are memory bound; keep the machine's other users their cores
  std::filesystem::create_directories(dir);
  auto path = dir / "state.safetensors";

  // A transformer-like state: a few large matrices, many mid-sized ones, in
  // bf16 and fp32, ~`gb` GB in all.
  const int64_t total = static_cast<int64_t>(gb * 1e9);
  st::NamedTensors state;
  int64_t bytes = 0;
  for (int i = 0; i < count; ++i) {
    auto type = i % 4 == 3 ? torch::kFloat32 : torch::kBFloat16;
    int64_t elems = total / count / c10::elementSize(type);
    int64_t cols = 4096;
    auto t = torch::empty({elems / cols, cols}, type);
    t.view(torch::kInt16).random_();  // any bits: no arithmetic happens
    bytes += t.nbytes();
    state.emplace_back("model.layers." + std::to_string(i) + ".weight", t);
  }
  std::printf("# %d tensors, %.3f GB, file %s\n", count, bytes / 1e9, path.c_str());

  std::vector<torch::Tensor> dst;
  for (const auto& [name, t] : state) dst.push_back(torch::empty_like(t));
  for (const auto& t : dst) t.zero_();  // fault the destination pages in before timing

  for (int r = 0; r < repeat; ++r) {
    double t0 = now();
    st::save_file(state, path);
    report("save", now() - t0, bytes);

    evict(path);
    t0 = now();
    {
      st::File file(path);
      for (size_t i = 0; i < state.size(); ++i) file.read_into(state[i].first, dst[i]);
    }
    report("load_cold", now() - t0, bytes);

    t0 = now();
    {
      st::File file(path);
      for (size_t i = 0; i < state.size(); ++i) file.read_into(state[i].first, dst[i]);
    }
    report("load_warm", now() - t0, bytes);

    evict(path);
    t0 = now();
    auto mapped = st::load_file(path);
    report("map_cold", now() - t0, bytes);

    if (torch::cuda::is_available()) {
      mapped = {};
      for (const char* what : {"gpu_cold", "gpu_warm"}) {
        if (std::string(what) == "gpu_cold") evict(path);
        t0 = now();
        auto on_gpu = st::load_file(path, torch::kCUDA);
        torch::cuda::synchronize();
        report(what, now() - t0, bytes);
      }
    }
  }
  for (size_t i = 0; i < state.size(); ++i) {
    if (!torch::equal(dst[i].view(torch::kInt16), state[i].second.view(torch::kInt16))) {
      std::fprintf(stderr, "mismatch in %s\n", state[i].first.c_str());
      return 1;
    }
  }
  std::filesystem::remove(path);
  return 0;
}
