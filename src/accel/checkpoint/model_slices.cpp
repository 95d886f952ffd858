#include "accel/checkpoint/model_slices.h"

#include <algorithm>

#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/tensor_parallel_slices.h"
#include "accel/checkpoint/tensor_slices.h"
#include "accel/parallel/mesh/device_mesh.h"
#include "accel/parallel/tensor/parallelize.h"
#include "accel/util/check.h"

namespace fs = std::filesystem;

namespace accel {
namespace {

bool has_dim(const DeviceMesh& mesh, const std::string& dim) {
  const auto names = mesh.dim_names();
  return std::find(names.begin(), names.end(), dim) != names.end();
}

int coordinate(const DeviceMesh& mesh, const std::string& dim) { return has_dim(mesh, dim) ? mesh.coordinate(dim) : 0; }

}  // namespace

std::optional<ModelSliceWriter> model_slice_writer(const DeviceMesh& mesh) {
  // The model is replicated over these; their ranks of coordinate 0 hold it once.
  for (const char* replica : {"dp_replicate", "dp_shard", "cp"})
    if (coordinate(mesh, replica) != 0) return std::nullopt;
  const int tp = mesh.config().tp_size, pp = mesh.config().pp_size;
  const int t = coordinate(mesh, "tp");
  return ModelSliceWriter{coordinate(mesh, "pp") * tp + t, pp * tp, t == 0};
}

void save_model_slices(const torch::nn::Module& model, const fs::path& file, const ModelSliceWriter& writer) {
  ACCEL_CHECK_ARG(writer.count >= 1 && writer.index >= 0 && writer.index < writer.count, "save_model_slices: writer ",
                  writer.index, " of ", writer.count, ", expected 0 <= index < count");
  std::vector<Slice> slices;
  for (const auto& [name, tensor] : model_state(model))
    if (tensor.numel() > 0)  // else another pipeline stage's
      append_tensor_slices(slices, name, tensor, tensor, writer.replicated);
  save_slices(slices, file, writer.count);
}

void save_model_slices(const torch::nn::Module& model, const DeviceMesh& mesh, const fs::path& dir) {
  const auto writer = model_slice_writer(mesh);
  if (!writer) return;
  fs::create_directories(dir);
  save_model_slices(model, dir / sharded_model_file_name(0, writer->index), *writer);
}

std::vector<fs::path> model_slice_files(const fs::path& dir, size_t model_index) {
  const auto first = dir / sharded_model_file_name(model_index, 0);
  ACCEL_CHECK(fs::exists(first), "'", dir.string(), "' holds no ", first.filename().string(),
              " (the first file of a split model's slices)");
  const int n = slice_file_world_size(first);
  std::vector<fs::path> files;
  std::string missing;
  for (int w = 0; w < n; ++w) {
    files.push_back(dir / sharded_model_file_name(model_index, w));
    if (!fs::exists(files.back())) missing += " " + files.back().filename().string();
  }
  ACCEL_CHECK(missing.empty(), "'", dir.string(), "': ", first.filename().string(), " counts ", n,
              " files of slices, missing:", missing);
  return files;
}

void load_model_slices(torch::nn::Module& model, const std::vector<fs::path>& files) {
  const SliceSet slices(files);
  auto state = model_state(model);
  for (const auto& [name, t] : state) {
    ACCEL_CHECK(slices.contains(name), "load_model_slices: the checkpoint holds no '", name, "'");
    const auto placement = tensor_parallel_placement(t);
    const auto want = placement ? placement->whole_shape : t.sizes().vec();
    ACCEL_CHECK(slices.whole(name).shape == want, "load_model_slices: '", name, "' is ", c10::IntArrayRef(want),
                " whole here and ", c10::IntArrayRef(slices.whole(name).shape), " in the checkpoint");
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : state) t.copy_(local_part_of(t, slices.read_whole(name)));
}

void load_model_parts(torch::nn::Module& model, const safetensors::OrderedTensors& whole, const std::string& source) {
  auto state = model_state(model);
  for (const auto& [name, t] : state) {
    const auto* saved = whole.find(name);
    ACCEL_CHECK(saved, "load_model_parts: ", source, " holds no '", name, "'");
    const auto placement = tensor_parallel_placement(t);
    const auto want = placement ? placement->whole_shape : t.sizes().vec();
    ACCEL_CHECK(saved->sizes().vec() == want, "load_model_parts: '", name, "' is ", c10::IntArrayRef(want),
                " whole here and ", saved->sizes(), " in ", source);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : state) t.copy_(local_part_of(t, *whole.find(name)));
}

}  // namespace accel
