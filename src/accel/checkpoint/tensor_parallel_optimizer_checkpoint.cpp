#include "accel/checkpoint/tensor_parallel_optimizer_checkpoint.h"

#include <charconv>
#include <map>

#include "accel/amp/master_weights.h"
#include "accel/checkpoint/atomic_file.h"
#include "accel/checkpoint/optimizer_state.h"
#include "accel/checkpoint/tensor_parallel_slices.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/optim/accelerated_optimizer.h"
#include "accel/util/check.h"

namespace fs = std::filesystem;

namespace accel {
namespace {

std::string rank_file(size_t index, int writer) {
  return numbered("tp_optimizer", index, "") + "_rank" + std::to_string(writer) + ".safetensors";
}
std::string json_file(size_t index) { return numbered("tp_optimizer", index, ".json"); }

// The parameters in optimizer_state's numbering: groups in order, then within each.
std::vector<torch::Tensor> numbered_parameters(const torch::optim::Optimizer& optimizer) {
  std::vector<torch::Tensor> out;
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params()) out.push_back(p);
  return out;
}

// The model's parameter that optimizer parameter `p` stands for: under
// master weights the optimizer steps fp32 copies, whose tensor-parallel
// placement is their model parameter's.
torch::Tensor model_parameter(const AcceleratedOptimizer& optimizer, const torch::Tensor& p) {
  const auto* masters = optimizer.master_weights();
  if (!masters) return p;
  for (size_t m = 0; m < masters->masters().size(); ++m)
    if (masters->masters()[m].unsafeGetTensorImpl() == p.unsafeGetTensorImpl()) return masters->model_params()[m];
  return p;
}

std::string master_key(size_t m) { return "master." + std::to_string(m); }

// n of "state.<n>.<field>", or nullopt.
std::optional<size_t> parameter_number(const std::string& key) {
  if (!key.starts_with("state.")) return std::nullopt;
  const char* begin = key.data() + 6;
  const char* end = key.data() + key.size();
  size_t n = 0;
  auto [stop, ec] = std::from_chars(begin, end, n);
  if (ec != std::errc() || stop == begin || stop == end || *stop != '.') return std::nullopt;
  return n;
}

class TensorParallelOptimizerCheckpoint : public OptimizerCheckpoint {
 public:
  TensorParallelOptimizerCheckpoint(AcceleratedOptimizer& optimizer, std::optional<ModelSliceWriter> writer,
                                    bool from_whole)
      : optimizer_(optimizer), writer_(writer), from_whole_(from_whole) {}

  void save(const fs::path& dir, size_t index, int rank) override {
    const auto params = numbered_parameters(optimizer_.optimizer());
    const auto state = optimizer_state(optimizer_.optimizer());
    if (writer_) {
      std::vector<Slice> slices;
      for (const auto& [key, t] : state.tensors) {
        const auto n = parameter_number(key);
        ACCEL_CHECK(n && *n < params.size(), "save_state: optimizer state tensor '", key,
                    "' is not a parameter's state");
        append_tensor_slices(slices, key, t, model_parameter(optimizer_, params[*n]), writer_->replicated);
      }
      // The fp32 masters are what the optimizer steps (the model holds
      // them rounded): each as the slice of its model parameter.
      if (const auto* masters = optimizer_.master_weights())
        for (size_t m = 0; m < masters->masters().size(); ++m)
          append_tensor_slices(slices, master_key(m), masters->masters()[m], masters->model_params()[m],
                               writer_->replicated);
      save_slices(slices, dir / rank_file(index, writer_->index), writer_->count);
    }
    if (rank == 0) write_file_atomic(dir / json_file(index), state.json);
  }

  std::vector<fs::path> files_to_load(const fs::path& dir, size_t index, int, bool) const override {
    if (from_whole_)
      return {dir / numbered("optimizer", index, ".json"), dir / numbered("optimizer", index, ".safetensors")};
    std::vector<fs::path> files{dir / json_file(index), dir / rank_file(index, 0)};
    if (!fs::exists(files.back())) return files;  // reported missing as it is
    const int n = slice_file_world_size(files.back());
    for (int w = 1; w < n; ++w) files.push_back(dir / rank_file(index, w));
    return files;
  }

  void load(const fs::path& dir, size_t index, int rank, bool same_world) override {
    auto files = files_to_load(dir, index, rank, same_world);
    const auto json_path = files.front();
    files.erase(files.begin());
    const auto params = numbered_parameters(optimizer_.optimizer());
    const auto* masters = optimizer_.master_weights();
    safetensors::OrderedTensors tensors;
    std::map<size_t, torch::Tensor> saved_masters;  // this rank's part of each "master.<m>"
    auto add = [&](const std::string& key, const torch::Tensor& whole) {
      if (key.starts_with("master.")) {
        if (!masters) return;  // a run without masters takes the model's weights
        for (size_t m = 0; m < masters->masters().size(); ++m)
          if (key == master_key(m)) saved_masters[m] = local_part_of(masters->model_params()[m], whole);
        return;
      }
      const auto n = parameter_number(key);
      ACCEL_CHECK(n && *n < params.size(), "load_state: '", files.front().string(), "' holds '", key,
                  "', not the state of one of the optimizer's ", params.size(), " parameters");
      tensors.insert(key, local_part_of(model_parameter(optimizer_, params[*n]), whole));
    };
    if (from_whole_) {
      for (const auto& item : safetensors::load_file(files.front())) add(item.key(), item.value());
    } else {
      const SliceSet slices(files);
      for (const auto& key : slices.wholes()) add(key, slices.read_whole(key));
    }
    if (masters)  // all checked before the optimizer state changes
      for (size_t m = 0; m < masters->masters().size(); ++m) {
        auto it = saved_masters.find(m);
        const auto& target = masters->masters()[m];
        ACCEL_CHECK(it != saved_masters.end() && it->second.sizes() == target.sizes() &&
                        it->second.scalar_type() == target.scalar_type(),
                    "load_state: '", files.front().string(), "' lacks master weight ", m, " (", target.sizes(), " ",
                    target.scalar_type(), " here): was it saved without master_weights?");
      }
    load_optimizer_state(optimizer_.optimizer(), tensors, read_checkpoint_text(json_path),
                         "'" + files.front().string() + "'");
    if (!masters) return;
    torch::NoGradGuard no_grad;
    for (size_t m = 0; m < masters->masters().size(); ++m) masters->masters()[m].copy_(saved_masters[m]);
  }

 private:
  AcceleratedOptimizer& optimizer_;
  std::optional<ModelSliceWriter> writer_;
  bool from_whole_;
};

}  // namespace

std::unique_ptr<OptimizerCheckpoint> tensor_parallel_optimizer_checkpoint(AcceleratedOptimizer& optimizer,
                                                                          std::optional<ModelSliceWriter> writer,
                                                                          bool from_whole) {
  return std::make_unique<TensorParallelOptimizerCheckpoint>(optimizer, writer, from_whole);
}

bool has_tensor_parallel_optimizer_files(const fs::path& dir, size_t index) {
  return fs::exists(dir / rank_file(index, 0));
}

}  // namespace accel
