// load_checkpoint_and_dispatch throughput: a safetensors checkpoint (single
// or sharded) read into a model built on the meta device from the
// checkpoint's own names and shapes. bench/load.sh runs it cold and warm
// beside dd, Python's safetensors and transformers' from_pretrained.
//
//   bench_load --checkpoint DIR [--device cuda|cpu] [--threads 8]
//
// Prints "accel_load <seconds> <bytes> <GB/s>" (GB = 10^9 bytes): the time
// of the call until the tensors are on the device (CUDA synchronised),
// after CUDA is initialised. The caller evicts the files for a cold run.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "accel/big_model/dispatch.h"
#include "accel/big_model/empty_init.h"
#include "accel/big_model/tensor_shapes.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// A module tree with a parameter (meta) for every tensor name.
struct Node : torch::nn::Module {
  Node* child(const std::string& name) {
    auto it = children_.find(name);
    if (it != children_.end()) return it->second;
    auto made = register_module(name, std::make_shared<Node>());
    return children_[name] = made.get();
  }
  std::map<std::string, Node*> children_;
};

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path checkpoint;
  std::string device = torch::cuda::is_available() ? "cuda" : "cpu";
  int threads = accel::DispatchOptions().read_threads();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--checkpoint") {
      checkpoint = argv[i + 1];
    } else if (flag == "--device") {
      device = argv[i + 1];
    } else if (flag == "--threads") {
      threads = std::stoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s (expected --checkpoint, --device, --threads)\n", argv[i]);
      return 2;
    }
  }
  if (checkpoint.empty()) {
    std::fprintf(stderr, "usage: bench_load --checkpoint DIR [--device cuda|cpu] [--threads N]\n");
    return 2;
  }
  const auto shapes = accel::checkpoint_tensor_shapes(checkpoint);
  auto model = std::make_shared<Node>();
  double bytes = 0;
  {
    accel::InitEmptyWeights scope;
    for (const auto& t : shapes) {
      Node* at = model.get();
      std::string rest = t.name;
      for (auto dot = rest.find('.'); dot != std::string::npos; dot = rest.find('.')) {
        at = at->child(rest.substr(0, dot));
        rest = rest.substr(dot + 1);
      }
      at->register_parameter(rest, torch::empty(t.shape, torch::dtype(t.dtype)), /*requires_grad=*/false);
      bytes += static_cast<double>(t.numel() * static_cast<int64_t>(c10::elementSize(t.dtype)));
    }
  }
  const std::string target = device == "cuda" ? "cuda:0" : device;
  if (device == "cuda") {
    torch::empty({1}, torch::kCUDA);  // CUDA's start-up is not the load's
    torch::cuda::synchronize();
  }
  const double start = now();
  accel::load_checkpoint_and_dispatch(*model, checkpoint,
                                      accel::DispatchOptions().device_map({{"", target}}).read_threads(threads));
  if (device == "cuda") torch::cuda::synchronize();
  const double seconds = now() - start;
  std::printf("accel_load %.3f %.0f %.3f\n", seconds, bytes, bytes / seconds / 1e9);
  return 0;
}
