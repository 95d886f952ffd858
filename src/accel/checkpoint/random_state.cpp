#include "accel/checkpoint/random_state.h"

#include <stdexcept>
#include <vector>

#include <ATen/Context.h>
#include <torch/cuda.h>

#include "accel/util/check.h"

namespace accel {

namespace {

// The default generators of this process with their names.
std::vector<std::pair<std::string, at::Generator>> default_generators() {
  std::vector<std::pair<std::string, at::Generator>> out;
  out.emplace_back("cpu", at::globalContext().defaultGenerator(c10::Device(c10::kCPU)));
  if (torch::cuda::is_available()) {
    const auto n = static_cast<c10::DeviceIndex>(torch::cuda::device_count());
    for (c10::DeviceIndex i = 0; i < n; ++i)
      out.emplace_back("cuda:" + std::to_string(i), at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, i)));
  }
  return out;
}

}  // namespace

safetensors::NamedTensors random_states() {
  safetensors::NamedTensors out;
  for (auto& [name, gen] : default_generators()) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    out.emplace_back(name, gen.get_state());
  }
  return out;
}

void load_random_states(const safetensors::OrderedTensors& states, const std::string& source) {
  auto gens = default_generators();
  std::vector<std::pair<at::Generator*, torch::Tensor>> todo;
  for (const auto& item : states) {
    at::Generator* gen = nullptr;
    for (auto& [name, g] : gens)
      if (name == item.key()) gen = &g;
    ACCEL_CHECK(gen, "random states in ", source, ": '", item.key(), "' names no generator of this process (it has ",
                gens.size(), ": cpu and its visible CUDA devices)");
    todo.emplace_back(gen, item.value());
  }
  for (auto& [gen, state] : todo) {
    std::lock_guard<std::mutex> lock(gen->mutex());
    try {
      gen->set_state(state.contiguous());
    } catch (const std::exception& e) {
      fail<std::runtime_error>("random states in ", source, ": the generator refused its state (",
                               std::string(e.what()).substr(0, 200), ")");
    }
  }
}

}  // namespace accel
