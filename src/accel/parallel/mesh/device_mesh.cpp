// DeviceMesh: the slices of init_device_mesh's row-major layout and one
// process group per slice this rank belongs to.
#include "accel/parallel/mesh/device_mesh.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "accel/dist/process_group.h"
#include "accel/state.h"
#include "accel/util/check.h"

namespace accel {

std::vector<int> mesh_slice(const std::vector<int>& shape, const std::vector<int>& dims, int rank) {
  std::vector<int> coords = mesh_coordinates(shape, rank);
  std::vector<int> strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * shape[i];
  int count = 1;
  for (int d : dims) count *= shape.at(d);
  std::vector<int> ranks;
  ranks.reserve(count);
  for (int k = 0; k < count; ++k) {
    // k read as row-major coordinates over `dims`, the last one fastest.
    int rest = k;
    for (size_t j = dims.size(); j-- > 0;) {
      coords[dims[j]] = rest % shape[dims[j]];
      rest /= shape[dims[j]];
    }
    int r = 0;
    for (size_t i = 0; i < shape.size(); ++i) r += coords[i] * strides[i];
    ranks.push_back(r);
  }
  return ranks;
}

namespace {
// Meshes built so far by this process. Construction is collective, so every
// rank counts alike; the count keeps a later mesh's groups off the store
// keys of an earlier one's.
std::atomic<int> meshes_built{0};
}  // namespace

DeviceMesh::DeviceMesh(const ProcessState& state, ParallelismConfig config) : config_(std::move(config)) {
  config_.validate();
  config_.check_world_size(state.world_size());
  const std::string prefix = "mesh" + std::to_string(meshes_built++) + "_";
  const std::vector<std::string> names = config_.mesh_dim_names();
  const std::vector<int> shape = config_.mesh_shape();
  auto index_of = [&](const std::string& n) {
    return static_cast<int>(std::find(names.begin(), names.end(), n) - names.begin());
  };
  auto build = [&](const std::string& name, const std::vector<int>& dims) {
    Dim d;
    d.ranks = mesh_slice(shape, dims, state.rank());
    d.coordinate = static_cast<int>(std::find(d.ranks.begin(), d.ranks.end(), state.rank()) - d.ranks.begin());
    if (state.process_group()) {
      Topology t = state.topology();
      t.rank = d.coordinate;
      t.world_size = static_cast<int>(d.ranks.size());
      // The first rank names the slice: every member gives the same name,
      // and no two slices of one dimension share it.
      d.group = new_process_group(state.store(), t, state.backend(), state.timeout(),
                                  state.device().is_cuda() ? state.device().index() : -1,
                                  prefix + name + "_" + std::to_string(d.ranks.front()));
    }
    order_.push_back(name);
    dims_.emplace(name, std::move(d));
  };
  for (size_t i = 0; i < names.size(); ++i) build(names[i], {static_cast<int>(i)});
  for (const auto& f : config_.flattened_dims()) {
    std::vector<int> dims;
    for (const auto& m : f.members) dims.push_back(index_of(m));
    build(f.name, dims);
  }
}

std::vector<std::string> DeviceMesh::dim_names() const { return order_; }

const DeviceMesh::Dim& DeviceMesh::dim(const std::string& name) const {
  auto it = dims_.find(name);
  if (it == dims_.end()) {
    std::string known;
    for (const auto& n : order_) known += (known.empty() ? "" : ", ") + n;
    fail<std::invalid_argument>("device mesh has no dimension '", name,
                                "'; its dimensions are: ", known.empty() ? "(none: every size is 1)" : known);
  }
  return it->second;
}

int DeviceMesh::size(const std::string& name) const { return static_cast<int>(dim(name).ranks.size()); }
int DeviceMesh::coordinate(const std::string& name) const { return dim(name).coordinate; }
const std::vector<int>& DeviceMesh::slice(const std::string& name) const { return dim(name).ranks; }
const ProcessGroupPtr& DeviceMesh::group(const std::string& name) const { return dim(name).group; }

}  // namespace accel
