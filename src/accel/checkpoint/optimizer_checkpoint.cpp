#include "accel/checkpoint/optimizer_checkpoint.h"

#include <fstream>
#include <iterator>

#include <torch/torch.h>

#include "accel/amp/master_weights.h"
#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/optim/accelerated_optimizer.h"
#include "accel/util/check.h"

namespace fs = std::filesystem;

namespace accel {

std::string numbered(const std::string& stem, size_t index, const std::string& extension) {
  return (index == 0 ? stem : stem + "_" + std::to_string(index)) + extension;
}

std::string read_checkpoint_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  ACCEL_CHECK(in, "load_state: cannot read '", path.string(), "'");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

namespace {

class FullOptimizerCheckpoint : public OptimizerCheckpoint {
 public:
  explicit FullOptimizerCheckpoint(AcceleratedOptimizer& optimizer) : optimizer_(optimizer) {}

  void save(const fs::path& dir, size_t index, int rank) override {
    if (rank != 0) return;
    OptimizerStateFiles full = optimizer_state(optimizer_.optimizer());
    if (const auto* masters = optimizer_.master_weights())
      for (size_t m = 0; m < masters->masters().size(); ++m)
        full.tensors.emplace_back("master." + std::to_string(m), masters->masters()[m].detach().to(torch::kCPU));
    safetensors::save_file(full.tensors, dir / numbered("optimizer", index, ".safetensors"));
    write_file_atomic(dir / numbered("optimizer", index, ".json"), full.json);
  }

  std::vector<fs::path> files_to_load(const fs::path& dir, size_t index, int, bool) const override {
    return {dir / numbered("optimizer", index, ".safetensors"), dir / numbered("optimizer", index, ".json")};
  }

  void load(const fs::path& dir, size_t index, int, bool) override {
    const auto file = dir / numbered("optimizer", index, ".safetensors");
    const auto tensors = safetensors::load_file(file);
    const auto text = read_checkpoint_text(dir / numbered("optimizer", index, ".json"));
    load_optimizer_state(optimizer_.optimizer(), tensors, text, "'" + file.string() + "'");
    const auto* masters = optimizer_.master_weights();
    if (!masters) return;
    torch::NoGradGuard no_grad;
    for (size_t m = 0; m < masters->masters().size(); ++m) {
      const auto* saved = tensors.find("master." + std::to_string(m));
      auto target = masters->masters()[m];
      ACCEL_CHECK(saved && saved->sizes() == target.sizes() && saved->scalar_type() == target.scalar_type(),
                  "load_state: '", file.string(), "' lacks master weight ", m,
                  " of its shape and dtype (was it saved without master_weights?)");
      target.copy_(*saved);
    }
  }

 private:
  AcceleratedOptimizer& optimizer_;
};

}  // namespace

std::unique_ptr<OptimizerCheckpoint> full_optimizer_checkpoint(AcceleratedOptimizer& optimizer) {
  return std::make_unique<FullOptimizerCheckpoint>(optimizer);
}

}  // namespace accel
