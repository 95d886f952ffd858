#pragma once
// Where each tensor of a dispatched model lives and runs, grouped by the
// unit whose forward uses it, and the hook that moves tensors at each unit
// (see dispatch.h for the rules). Internal to big_model.
#include <c10/core/Event.h>
#include <c10/core/Stream.h>

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/big_model/device_map.h"
#include "accel/unit/unit.h"

namespace accel::big_model {

/// One tensor of the model (one TensorImpl, under its first name).
struct PlacedTensor {
  std::string name;
  torch::Tensor handle;  // shares the model's TensorImpl
  bool buffer = false;
  std::string mapped;  // the map's device: "cuda:N", "cpu", "disk"
  bool offloaded = false;
  c10::Device exec{c10::kCPU};  // where it runs (resident: where it lives)
  // Offloaded: the value in host memory (pinned) or the file's mapping, and
  // the dtype it runs in.
  torch::Tensor source;
  torch::ScalarType dtype = torch::kFloat;
  std::optional<c10::Device> before;  // where it was before an offload (put back on removal)
  int loaded = 0;                     // units running that hold it on `exec`
  torch::Tensor prefetched;           // copied in ahead, on a side stream
  std::optional<c10::Event> ready;
};

/// The tensors one unit's forward uses (its own, outside nested units).
struct Group {
  std::string path;
  std::shared_ptr<UnitSlot> slot;  // null: the model's own tensors, the model not a unit
  int parent = -1;                 // the enclosing group
  c10::Device exec{c10::kCPU};
  std::vector<PlacedTensor*> tensors;
};

class Placement {
 public:
  /// Groups the model's tensors and places them by `map` (checked); throws
  /// std::invalid_argument naming tensors whose unit cannot run (dispatch.h).
  /// "disk" tensors are offloaded, and "cpu" ones when the main device is
  /// not the CPU or `cpu_offloads`.
  Placement(torch::nn::Module& model, const DeviceMap& map, c10::Device main, bool offload_buffers, bool cpu_offloads);

  std::vector<std::unique_ptr<PlacedTensor>>& tensors() { return tensors_; }
  std::vector<Group>& groups() { return groups_; }
  c10::Device main() const { return main_; }
  c10::Device root_device() const { return groups_.front().exec; }
  /// Whether any hook is needed (more than one device, or any offload).
  bool needs_hooks() const;

  /// Attaches the hooks (appended after the units' other hooks).
  void attach(const std::shared_ptr<Placement>& self);

  // What the hooks call.
  void load(Group& g);
  void drop(Group& g);
  void prefetch_after(size_t group);
  void record_order(size_t group);

 private:
  void load_one(PlacedTensor& t);

  std::vector<std::unique_ptr<PlacedTensor>> tensors_;
  std::vector<Group> groups_;
  c10::Device main_;
  // Unit order, learned on the first forward (groups by pre_forward).
  std::vector<size_t> order_;
  bool order_known_ = false;
  std::optional<c10::Stream> copy_stream_;
};

/// The main device Accelerate picks: the first GPU of the map, else the CPU.
c10::Device default_main_device(const DeviceMap& map);

}  // namespace accel::big_model
