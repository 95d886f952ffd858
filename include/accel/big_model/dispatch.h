#pragma once
// Running a model spread over devices: Accelerate's dispatch_model,
// load_checkpoint_and_dispatch, cpu_offload and disk_offload, with the work
// done at units (unit/unit.h).
//
//   auto model = accel::init_empty_weights([&] { return gpt2::GPT2(options); });
//   accel::Unit<gpt2::GPT2> root(model, "GPT2LMHeadModel");  // optional: see "The model's own tensors"
//   auto map = accel::load_checkpoint_and_dispatch(*model, "gpt2-xl/", accel::DispatchOptions()
//       .max_memory({{"cuda:0", "1GiB"}, {"cpu", "30GiB"}})
//       .no_split_module_classes({"GPT2Block"})
//       .dtype(torch::kHalf));
//   auto logits = root(tokens);   // tokens anywhere: logits come back to their device
//
// Where tensors live (a device map, device_map.h): a tensor mapped to a GPU,
// or to the CPU when the CPU is the main device, is resident there. One
// mapped to "cpu" under a GPU main device is offloaded: it stays in host
// memory (pinned, for asynchronous copies) and the model's tensor is on the
// meta device except while its unit runs. One mapped to "disk" is read from
// the checkpoint's own memory mapping (or the offload folder's) each time
// its unit runs. The main device is the first GPU of the map, else the CPU;
// offloaded tensors run there, as in Accelerate.
//
// What happens at a unit (its hook, hooks.h): before the block runs, its
// offloaded tensors are brought to the unit's execution device and its
// tensor arguments are moved there; after, the offloaded tensors go back to
// the meta device, and the outputs go to the device of the code that
// called the unit (the enclosing unit's execution device, or, for the
// model itself when it is a unit, the device the first input came from, as
// Accelerate's io_same_device). On CUDA, when the order of the units is
// known (after the first forward), the offloaded tensors of the next unit
// that has any in pinned memory are copied in on a side stream while the
// units before it compute; the order is a cycle, so the last such unit
// prefetches the first one of the next forward (a generation loop's next
// token), whose copy then stays on the GPU until it runs.
//
// The model's own tensors: tensors outside every unit run in the model's
// own forward, which accel cannot hook unless the model is itself a unit.
// They must then be resident, and the caller passes inputs on their device
// (dispatch returns it); a map that offloads them, or that splits them
// across execution devices, is refused naming them. Likewise all tensors of
// one unit (outside its nested units) must share an execution device: pass
// the unit classes as no_split_module_classes when inferring a map.
//
// Remove the hooks with remove_hook_from_units(model) (hooks.h); offloaded
// tensors then stay on the meta device unless they were elsewhere before
// the offload (cpu_offload, disk_offload), where they are put back.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/big_model/auto_device_map.h"
#include "accel/big_model/device_map.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API DispatchOptions {
  /// The map to follow; none: infer_auto_device_map with the options below.
  DispatchOptions& device_map(DeviceMap v) {
    device_map_ = std::move(v);
    return *this;
  }
  DispatchOptions& max_memory(MaxMemory v) {
    max_memory_ = std::move(v);
    return *this;
  }
  DispatchOptions& no_split_module_classes(std::vector<std::string> v) {
    no_split_module_classes_ = std::move(v);
    return *this;
  }
  /// Floating-point tensors are converted to this dtype as they load;
  /// none: each takes the model tensor's dtype (LibTorch's load_state_dict rule).
  DispatchOptions& dtype(std::optional<torch::ScalarType> v) {
    dtype_ = v;
    return *this;
  }
  /// Where offloaded tensors run; none: the map's first GPU, else the CPU.
  DispatchOptions& main_device(std::optional<c10::Device> v) {
    main_device_ = v;
    return *this;
  }
  /// Where disk-offloaded tensors are written when they are not read from a
  /// checkpoint (dispatch_model, disk_offload).
  DispatchOptions& offload_dir(std::filesystem::path v) {
    offload_dir_ = std::move(v);
    return *this;
  }
  /// Offload buffers with the parameters (default: buffers stay resident on
  /// their unit's execution device).
  DispatchOptions& offload_buffers(bool v) {
    offload_buffers_ = v;
    return *this;
  }

  /// Threads reading the checkpoint in load_checkpoint_and_dispatch, each
  /// with up to two 8 MiB staging buffers: several reads in flight keep a
  /// fast disk busy, cold or cached.
  DispatchOptions& read_threads(int v) {
    read_threads_ = v;
    return *this;
  }

  const std::optional<DeviceMap>& device_map() const { return device_map_; }
  const MaxMemory& max_memory() const { return max_memory_; }
  const std::vector<std::string>& no_split_module_classes() const { return no_split_module_classes_; }
  std::optional<torch::ScalarType> dtype() const { return dtype_; }
  std::optional<c10::Device> main_device() const { return main_device_; }
  const std::filesystem::path& offload_dir() const { return offload_dir_; }
  bool offload_buffers() const { return offload_buffers_; }
  int read_threads() const { return read_threads_; }

 private:
  std::optional<DeviceMap> device_map_;
  MaxMemory max_memory_;
  std::vector<std::string> no_split_module_classes_;
  std::optional<torch::ScalarType> dtype_;
  std::optional<c10::Device> main_device_;
  std::filesystem::path offload_dir_;
  bool offload_buffers_ = false;
  int read_threads_ = 8;
};

/// What a dispatch did.
struct ACCEL_API Dispatched {
  /// The map followed (checked, devices spelled "cuda:N").
  DeviceMap device_map;
  /// Where offloaded tensors run.
  c10::Device main_device{c10::kCPU};
  /// Where the model's own forward runs (its tensors outside every unit):
  /// the device to give inputs on when the model is not a unit.
  c10::Device root_device{c10::kCPU};
};

/// Loads the safetensors checkpoint at `checkpoint` (a file, an index, or a
/// folder, single or sharded; model_files.h) into `model`, built on the
/// meta device (init_empty_weights), placing each tensor by the map: each
/// is read from its file straight to its device, in 8 MiB chunks by
/// read_threads threads at once (CPU tensors read into directly, GPU ones
/// through pinned staging buffers, each chunk's copy to the GPU
/// overlapping the next reads), converted to its dtype on the way;
/// disk-mapped tensors are not read at all. Host memory beyond what the
/// map puts there: at most 2 x read_threads x 8 MiB of staging. Then hooks
/// are attached as dispatch_model does. Throws std::invalid_argument for
/// read_threads < 1.
/// Throws std::invalid_argument naming the model tensors the checkpoint
/// lacks, the checkpoint tensors the model lacks, or a shape that differs.
ACCEL_API Dispatched load_checkpoint_and_dispatch(torch::nn::Module& model, const std::filesystem::path& checkpoint,
                                                  const DispatchOptions& options = {});

/// Places a model whose tensors hold their values (on any device; meta for
/// none) by the map: resident tensors move to their device; offloaded ones
/// are kept in host memory ("cpu") or written to offload_dir ("disk",
/// required then), their model tensors going to the meta device.
ACCEL_API Dispatched dispatch_model(torch::nn::Module& model, const DispatchOptions& options);

/// Accelerate's cpu_offload: every tensor of the model kept in host memory,
/// brought to `execution_device` just while its unit runs. Tensors outside
/// every unit, when the model is not a unit, stay on `execution_device`.
ACCEL_API Dispatched cpu_offload(torch::nn::Module& model, c10::Device execution_device, bool offload_buffers = false);

/// Accelerate's disk_offload: the tensors written to `offload_dir` (one
/// safetensors file) and read from its memory mapping while their unit
/// runs. Tensors outside every unit, when the model is not a unit, stay on
/// `execution_device`.
ACCEL_API Dispatched disk_offload(torch::nn::Module& model, const std::filesystem::path& offload_dir,
                                  c10::Device execution_device, bool offload_buffers = false);

}  // namespace accel
