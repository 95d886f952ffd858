#pragma once
// Device maps: where each part of a model lives, as Accelerate writes them.
//
//   accel::DeviceMap map = {{"transformer.wte", "cuda:0"}, {"transformer.h.0", "cuda:0"},
//                           {"transformer.h.1", "cpu"}, {"transformer.ln_f", "disk"}};
//
// A key is a module's dotted path in the model ("" for the whole model) or a
// tensor's name; a tensor goes where its longest named ancestor goes.
// Devices are "cuda:N", "cpu" and "disk"; Accelerate's spellings are read
// too (an integer "0" is "cuda:0", "cuda" is "cuda:0").
//
// Memory budgets (max_memory) are Accelerate's as well: bytes as an integer,
// or a string with a unit, "10GiB", "500MB", "1.5GB" (GB = 10^9 bytes, GiB =
// 2^30; a lower-case "b" ("8Gb") counts bits, as Accelerate's
// convert_file_size_to_int does).
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <torch/nn/module.h>

#include "accel/util/export.h"

namespace accel {

/// Module or tensor name -> "cuda:N", "cpu" or "disk".
using DeviceMap = std::map<std::string, std::string>;

/// A device as device maps spell it: "cuda:N" for "N", "cuda" and
/// "cuda:N", "cpu", "disk". Throws std::invalid_argument for anything
/// else, naming it.
ACCEL_API std::string map_device(std::string_view device);

/// Bytes in "10GiB", "500MB", "1.5GB", "100KiB", "8Gb" (Accelerate's
/// convert_file_size_to_int). Throws std::invalid_argument for a size
/// without a unit or a negative one.
ACCEL_API int64_t parse_memory_size(std::string_view size);

/// A budget: bytes, or a string parse_memory_size reads.
class ACCEL_API MemorySize {
 public:
  MemorySize(int64_t bytes);            // NOLINT: implicit, as Python's int
  MemorySize(int bytes);                // NOLINT
  MemorySize(const char* size);         // NOLINT: implicit, as Python's str
  MemorySize(const std::string& size);  // NOLINT
  int64_t bytes() const { return bytes_; }

 private:
  int64_t bytes_;
};

/// Device -> budget: {{"cuda:0", "10GiB"}, {"cpu", "30GiB"}}. Keys as
/// map_device reads them ("0" is "cuda:0"); a "disk" budget is not used
/// (the disk holds whatever is left).
using MaxMemory = std::vector<std::pair<std::string, MemorySize>>;

/// Accelerate's get_max_memory: the budgets in the order they fill (GPUs by
/// index, then "cpu", then "disk"), in bytes. Empty: the free memory of
/// every CUDA device and the host's available memory (MemAvailable).
/// Throws std::invalid_argument for an unknown device or one given twice.
ACCEL_API std::vector<std::pair<std::string, int64_t>> resolve_max_memory(const MaxMemory& max_memory);

/// Accelerate's find_tied_parameters: groups of parameter names that are
/// one tensor (registered under several names), each sorted, one per
/// tensor, in the order the model's parameters first name them.
ACCEL_API std::vector<std::vector<std::string>> find_tied_parameters(torch::nn::Module& model);

/// The device of the tensor or module `name` under `map`: that of its
/// longest ancestor in the map. Throws std::invalid_argument, naming it,
/// when no ancestor is in the map.
ACCEL_API const std::string& device_for(const DeviceMap& map, const std::string& name);

/// Checks `map` against `model`: every key names a module or tensor of the
/// model ("" the model), every device is one map_device reads (the map is
/// returned with them spelled "cuda:N"), and every parameter and buffer has
/// a device. Throws std::invalid_argument naming the key that names nothing,
/// the device that is not one, or the tensors left without a device.
ACCEL_API DeviceMap check_device_map(torch::nn::Module& model, const DeviceMap& map);

}  // namespace accel
