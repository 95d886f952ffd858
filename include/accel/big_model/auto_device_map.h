#pragma once
// infer_auto_device_map: Accelerate's function of that name, rule for rule,
// on a LibTorch model (typically one built by init_empty_weights: only
// shapes and dtypes are read).
//
//   auto model = accel::init_empty_weights([&] { return gpt2::GPT2(options); });
//   auto map = accel::infer_auto_device_map(*model, accel::DeviceMapOptions()
//                                                       .max_memory({{"cuda:0", "1GiB"}, {"cpu", "30GiB"}})
//                                                       .no_split_module_classes({"GPT2Block"})
//                                                       .dtype(torch::kBFloat16));
//
// The rules (accelerate/utils/modeling.py): the model's own parameters, its
// child modules and its own buffers are placed in order, filling GPU 0,
// then the next GPUs, then the CPU, then the disk, which takes the rest.
// While anything is placed on GPU 0 or the CPU (the devices offloaded layers
// run from), room for the largest layer is kept free there. A module that
// does not fit where the filling stands is split into its parameters and
// children, unless it has none or its class is one of
// no_split_module_classes; then the filling moves to the next device.
// Parameters tied together (one tensor under several names) go with the
// module that holds the first of them: the other modules holding them are
// placed with it, or split when only the tie is too large. A layer is a
// module with no children or one of no_split_module_classes; sizes count
// each tensor once, in `dtype` when given (floating-point tensors take the
// smaller of their own size and dtype's; integer and bool tensors keep
// theirs; a bool is 1/8 byte). Modules that end on one device are merged
// into their parent ("clean_result").
//
// Class names: a unit answers to the names UnitSlot::class_names lists (the
// name its author gave, "GPT2Block", and its C++ class); another module to
// its C++ class with and without namespace and "Impl" ("torch::nn::LinearImpl",
// "Linear", ...). Pass the model's unit names in no_split_module_classes:
// dispatch moves weights only at units (dispatch.h), so a unit split across
// execution devices cannot run.
//
// Beyond Accelerate, two refusals instead of a map that cannot run or a
// silently ignored setting (std::invalid_argument): a no_split class that no
// module of the model has, and budgets none of which (the disk aside) can
// hold the largest layer, which every offloaded layer must fit on to run.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/big_model/device_map.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API DeviceMapOptions {
  /// Budgets per device; empty: what the devices have free (resolve_max_memory).
  DeviceMapOptions& max_memory(MaxMemory v) {
    max_memory_ = std::move(v);
    return *this;
  }
  /// Classes never split across devices (transformers' _no_split_modules).
  DeviceMapOptions& no_split_module_classes(std::vector<std::string> v) {
    no_split_module_classes_ = std::move(v);
    return *this;
  }
  /// The dtype the weights will be loaded in; none: their own.
  DeviceMapOptions& dtype(std::optional<torch::ScalarType> v) {
    dtype_ = v;
    return *this;
  }
  /// Tensor name -> dtype, overriding `dtype` for those tensors.
  DeviceMapOptions& special_dtypes(std::map<std::string, torch::ScalarType> v) {
    special_dtypes_ = std::move(v);
    return *this;
  }
  /// Merge modules that end on one device into their parent (default true).
  DeviceMapOptions& clean_result(bool v) {
    clean_result_ = v;
    return *this;
  }

  /// Accelerate's fallback_allocation (default false): when the filling
  /// would leave a device (not the disk) empty because the next module
  /// neither fits nor splits, put there the first module still to place,
  /// searched breadth first, that fits beside room for the largest layer
  /// and that module, before moving on.
  DeviceMapOptions& fallback_allocation(bool v) {
    fallback_allocation_ = v;
    return *this;
  }

  const MaxMemory& max_memory() const { return max_memory_; }
  const std::vector<std::string>& no_split_module_classes() const { return no_split_module_classes_; }
  std::optional<torch::ScalarType> dtype() const { return dtype_; }
  const std::map<std::string, torch::ScalarType>& special_dtypes() const { return special_dtypes_; }
  bool clean_result() const { return clean_result_; }
  bool fallback_allocation() const { return fallback_allocation_; }

 private:
  MaxMemory max_memory_;
  std::vector<std::string> no_split_module_classes_;
  std::optional<torch::ScalarType> dtype_;
  std::map<std::string, torch::ScalarType> special_dtypes_;
  bool clean_result_ = true;
  bool fallback_allocation_ = false;
};

/// Accelerate's compute_module_sizes: bytes of every module and tensor by
/// name ("" the whole model), each tensor counted once (a tied tensor under
/// its first name), sized as infer_auto_device_map sizes them. Doubles: a
/// bool's 1/8 byte (every size is a multiple of 1/8 and exact).
ACCEL_API std::map<std::string, double> compute_module_sizes(
    torch::nn::Module& model, std::optional<torch::ScalarType> dtype = std::nullopt,
    const std::map<std::string, torch::ScalarType>& special_dtypes = {});

/// The device map Accelerate's infer_auto_device_map computes for `model`.
ACCEL_API DeviceMap infer_auto_device_map(torch::nn::Module& model, const DeviceMapOptions& options = {});

/// Accelerate's clean_device_map: entries under one module that all go to
/// one device become one entry for that module.
ACCEL_API DeviceMap clean_device_map(DeviceMap map);

}  // namespace accel
