#include "accel/big_model/device_map.h"

#include <torch/cuda.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "accel/util/check.h"

#ifdef ACCEL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace accel {

namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() < 10 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A decimal number as Python's float() reads one (no inf, nan or underscores).
std::optional<double> parse_number(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exponent = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++exponent;
    if (exponent == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  return std::stod(std::string(s));
}

int64_t host_available_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  while (meminfo >> key) {
    if (key == "MemAvailable:") {
      int64_t kib = 0;
      meminfo >> kib;
      return kib * 1024;
    }
    std::getline(meminfo, key);
  }
  fail<std::runtime_error>("max_memory: no MemAvailable in /proc/meminfo to size the CPU's budget; give max_memory");
}

int64_t cuda_free_bytes(int index) {
#ifdef ACCEL_WITH_CUDA
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
  size_t free = 0, total = 0;
  const cudaError_t status = cudaMemGetInfo(&free, &total);
  ACCEL_CHECK(status == cudaSuccess, "max_memory: cannot read the free memory of cuda:", index, " (",
              cudaGetErrorString(status), ")");
  return static_cast<int64_t>(free);
#else
  fail<std::runtime_error>("max_memory: this build of accel has no CUDA to size cuda:", index);
#endif
}

int gpu_index(const std::string& device) { return std::stoi(device.substr(5)); }

}  // namespace

std::string map_device(std::string_view device) {
  if (device == "cpu" || device == "disk") return std::string(device);
  if (device == "cuda") return "cuda:0";
  if (all_digits(device)) return "cuda:" + std::to_string(std::stoi(std::string(device)));
  if (device.starts_with("cuda:") && all_digits(device.substr(5)))
    return "cuda:" + std::to_string(std::stoi(std::string(device.substr(5))));
  fail("device map: '", device, "' is not a device; expected \"cuda:N\" (or Accelerate's N), \"cpu\" or \"disk\"");
}

int64_t parse_memory_size(std::string_view size) {
  const std::string upper = [&] {
    std::string u(size);
    for (auto& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return u;
  }();
  struct Unit {
    const char* suffix;
    double factor;
    bool bits_when_lower_b;
  };
  static const Unit units[] = {{"GIB", 1073741824.0, false},
                               {"MIB", 1048576.0, false},
                               {"KIB", 1024.0, false},
                               {"GB", 1e9, true},
                               {"MB", 1e6, true},
                               {"KB", 1e3, true}};
  for (const auto& unit : units) {
    const std::string_view suffix(unit.suffix);
    if (!std::string_view(upper).ends_with(suffix)) continue;
    const auto number = parse_number(size.substr(0, size.size() - suffix.size()));
    if (!number) break;
    const double value = std::trunc(*number * unit.factor);
    ACCEL_CHECK_ARG(value >= 0 && value < 9.2e18, "max_memory: '", size, "' is not a size of memory (",
                    value < 0 ? "negative" : "too large", ")");
    int64_t bytes = static_cast<int64_t>(value);
    if (unit.bits_when_lower_b && size.back() == 'b') bytes /= 8;
    return bytes;
  }
  fail("max_memory: '", size,
       "' is not a size; expected bytes as an integer, or a number with a unit such as 5GiB, 500MiB, 1.5GB, 500MB, "
       "100KB (GiB = 2^30 bytes, GB = 10^9; a lower-case b counts bits)");
}

MemorySize::MemorySize(int64_t bytes) : bytes_(bytes) {
  ACCEL_CHECK_ARG(bytes >= 0, "max_memory: ", bytes, " bytes is negative");
}
MemorySize::MemorySize(int bytes) : MemorySize(static_cast<int64_t>(bytes)) {}
MemorySize::MemorySize(const char* size) : bytes_(parse_memory_size(size)) {}
MemorySize::MemorySize(const std::string& size) : bytes_(parse_memory_size(size)) {}

std::vector<std::pair<std::string, int64_t>> resolve_max_memory(const MaxMemory& max_memory) {
  std::vector<std::pair<std::string, int64_t>> gpus, rest;
  if (max_memory.empty()) {
    for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i)
      gpus.emplace_back("cuda:" + std::to_string(i), cuda_free_bytes(i));
    gpus.emplace_back("cpu", host_available_bytes());
    return gpus;
  }
  std::set<std::string> seen;
  for (const auto& [key, size] : max_memory) {
    std::string device;
    try {
      device = map_device(key);
    } catch (const std::invalid_argument&) {
      fail("max_memory: '", key, "' is not a device; expected \"cuda:N\" (or Accelerate's N), \"cpu\" or \"disk\"");
    }
    ACCEL_CHECK_ARG(seen.insert(device).second, "max_memory: ", device, " is given twice");
    (device.starts_with("cuda:") ? gpus : rest).emplace_back(device, size.bytes());
  }
  std::stable_sort(gpus.begin(), gpus.end(),
                   [](const auto& a, const auto& b) { return gpu_index(a.first) < gpu_index(b.first); });
  for (const char* name : {"cpu", "disk"})
    for (const auto& entry : rest)
      if (entry.first == name) gpus.push_back(entry);
  return gpus;
}

std::vector<std::vector<std::string>> find_tied_parameters(torch::nn::Module& model) {
  std::unordered_map<const c10::TensorImpl*, size_t> group_of;
  std::vector<std::vector<std::string>> groups;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) {
    const auto* impl = p.value().unsafeGetTensorImpl();
    auto [it, first] = group_of.emplace(impl, groups.size());
    if (first) groups.push_back({});
    groups[it->second].push_back(p.key());
  }
  std::vector<std::vector<std::string>> tied;
  for (auto& group : groups) {
    std::set<std::string> names(group.begin(), group.end());
    if (names.size() > 1) tied.emplace_back(names.begin(), names.end());
  }
  return tied;
}

const std::string& device_for(const DeviceMap& map, const std::string& name) {
  std::string at = name;
  while (true) {
    if (auto it = map.find(at); it != map.end()) return it->second;
    ACCEL_CHECK_ARG(!at.empty(), "device map: no device for '", name,
                    "' (neither it nor a module holding it is a key)");
    const auto dot = at.rfind('.');
    at = dot == std::string::npos ? "" : at.substr(0, dot);
  }
}

DeviceMap check_device_map(torch::nn::Module& model, const DeviceMap& map) {
  std::unordered_set<std::string> names;
  for (const auto& m : model.named_modules("", /*include_self=*/true)) names.insert(m.key());
  std::vector<std::string> tensors;
  for (const auto& p : model.named_parameters()) tensors.push_back(p.key());
  for (const auto& b : model.named_buffers()) tensors.push_back(b.key());
  names.insert(tensors.begin(), tensors.end());
  DeviceMap checked;
  for (const auto& [key, device] : map) {
    ACCEL_CHECK_ARG(names.count(key), "device map: '", key, "' is neither a module nor a tensor of the model");
    checked[key] = map_device(device);
  }
  std::vector<std::string> missing;
  for (const auto& t : tensors) {
    bool covered = false;
    for (std::string at = t;; at = at.substr(0, at.rfind('.'))) {
      if (checked.count(at)) {
        covered = true;
        break;
      }
      if (at.find('.') == std::string::npos) {
        covered = checked.count("") > 0;
        break;
      }
    }
    if (!covered) missing.push_back(t);
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 20; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 20) list += ", ... (" + std::to_string(missing.size()) + " in all)";
    fail("device map: no device for ", list);
  }
  return checked;
}

}  // namespace accel
