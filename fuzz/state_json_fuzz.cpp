// libFuzzer target: the JSON files of a save_state folder that load_state
// reads, on arbitrary text: accel_state.json (through Accelerator::load_state
// on a real checkpoint of a prepared Linear + AdamW), optimizer.json
// (load_optimizer_state, with the tensors of a real AdamW state) and a data
// loader's position (LoaderState). Beyond "no crash" (ASan, UBSan): each
// refusal is a std::exception with a message of bounded size, and a refused
// load leaves the model's weights as they were.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "accel/accelerator.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/data/loader_state.h"

namespace {

namespace fs = std::filesystem;

struct Fixture {
  Fixture() : dir(fs::temp_directory_path() / ("accel_state_fuzz_" + std::to_string(getpid()))) {
    fs::remove_all(dir);
    torch::manual_seed(0);
    net = torch::nn::Linear(3, 2);
    adamw = std::make_shared<torch::optim::AdamW>(net->parameters(), 1e-3);
    net->forward(torch::ones({1, 3})).sum().backward();
    adamw->step();
    saved = accel::optimizer_state(*adamw);
    tensors = accel::safetensors::OrderedTensors();
    for (auto& [name, t] : saved.tensors) tensors.insert(name, t);
    acc = std::make_unique<accel::Accelerator>(accel::AcceleratorOptions().cpu(true));
    auto prepared = acc->prepare(net, adamw);
    keep = std::make_shared<decltype(prepared)>(std::move(prepared));
    acc->save_state(dir);
    weights = net->weight.detach().clone();
  }
  ~Fixture() { fs::remove_all(dir); }
  fs::path dir;
  torch::nn::Linear net{nullptr};
  std::shared_ptr<torch::optim::AdamW> adamw;
  accel::OptimizerStateFiles saved;
  accel::safetensors::OrderedTensors tensors;
  std::unique_ptr<accel::Accelerator> acc;
  std::shared_ptr<void> keep;
  torch::Tensor weights;
};

void bounded(const std::exception& e) {
  if (std::string(e.what()).size() > 4000) std::abort();  // a value quoted whole
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::ofstream(f.dir / "accel_state.json", std::ios::binary | std::ios::trunc) << text;
  try {
    f.acc->load_state(f.dir);
  } catch (const std::exception& e) {
    bounded(e);
    if (!torch::equal(f.net->weight, f.weights)) std::abort();  // refused, yet loaded
  }
  try {
    accel::load_optimizer_state(*f.adamw, f.tensors, text, "'optimizer.json'");
  } catch (const std::runtime_error& e) {
    bounded(e);
  }
  try {
    accel::LoaderState::from_string(text);
  } catch (const std::invalid_argument& e) {
    bounded(e);
  }
  return 0;
}
