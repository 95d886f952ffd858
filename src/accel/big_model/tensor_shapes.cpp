// TensorShape, and the shapes of a checkpoint's tensors read from its
// safetensors headers (a config's are in tensor_shapes_config.cpp).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <string_view>

#include "accel/big_model/tensor_shapes.h"
#include "accel/checkpoint/model_files.h"
#include "accel/checkpoint/safetensors.h"
#include "accel/util/check.h"
#include "accel/util/checked_number.h"

namespace accel {
namespace {

// Reads the 8-byte prefix and the JSON header, nothing after them: a
// checkpoint of hundreds of GB is sized by reading a few MB.
safetensors::Header read_header(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  ACCEL_CHECK(in, "cannot open safetensors file '", path.string(), "': ", std::strerror(errno));
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  ACCEL_CHECK(!ec, "cannot read the size of '", path.string(), "': ", ec.message());
  char prefix[8] = {};
  in.read(prefix, sizeof prefix);
  ACCEL_CHECK(in.gcount() == sizeof prefix, "safetensors file '", path.string(), "' is ", file_size,
              " bytes, too short for a header");
  const uint64_t header_size = safetensors::parse_header_size(prefix, file_size, path.string());
  std::string json(header_size, '\0');
  in.read(json.data(), static_cast<std::streamsize>(header_size));
  ACCEL_CHECK(static_cast<uint64_t>(in.gcount()) == header_size, "cannot read the header of '", path.string(), "'");
  return safetensors::parse_header(json, file_size, path.string());
}

// Whether `part` is a number (a block of a list: "h.10").
bool is_index(std::string_view part) {
  return !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Dotted names part by part, numbered parts by number ("h.2" < "h.10"),
// others by bytes.
bool natural_less(std::string_view a, std::string_view b) {
  while (true) {
    const size_t a_end = std::min(a.find('.'), a.size());
    const size_t b_end = std::min(b.find('.'), b.size());
    const std::string_view a_part = a.substr(0, a_end), b_part = b.substr(0, b_end);
    if (a_part != b_part) {
      // Numbers without leading zeros: the longer is the larger.
      if (is_index(a_part) && is_index(b_part) && a_part.size() != b_part.size()) {
        return a_part.size() < b_part.size();
      }
      return a_part < b_part;
    }
    if (a_end == a.size() || b_end == b.size()) return a_end == a.size() && b_end != b.size();
    a.remove_prefix(a_end + 1);
    b.remove_prefix(b_end + 1);
  }
}

}  // namespace

int64_t TensorShape::numel() const {
  auto count = element_count(shape);
  ACCEL_CHECK_ARG(count.has_value(), "tensor '", name, "' has a negative size or more than 2^63 elements");
  return *count;
}

TensorShapes checkpoint_tensor_shapes(const std::filesystem::path& path) {
  const CheckpointFiles checkpoint = find_checkpoint_files(path);
  TensorShapes out;
  std::set<std::string> found;
  for (const auto& file : checkpoint.files) {
    for (auto& info : read_header(file).tensors) {
      // The index decides which file holds a tensor (as the loaders do).
      auto it = checkpoint.weight_map.find(info.name);
      if (it == checkpoint.weight_map.end() || it->second != file) continue;
      found.insert(info.name);
      out.push_back({std::move(info.name), std::move(info.shape), safetensors::to_scalar_type(info.dtype)});
    }
  }
  for (const auto& [name, file] : checkpoint.weight_map) {
    ACCEL_CHECK(found.count(name), "checkpoint index '", checkpoint.index_file.string(), "' says tensor '", name,
                "' is in '", file.filename().string(), "', which does not hold it");
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return natural_less(a.name, b.name); });
  return out;
}

TensorShapes model_tensor_shapes(const std::filesystem::path& path, std::filesystem::path* source) {
  constexpr std::string_view kExpected =
      "expected a folder holding model.safetensors, model.safetensors.index.json or config.json, or one of those "
      "files";
  std::filesystem::path from;
  bool config = false;
  if (std::filesystem::is_directory(path)) {
    // Weights first: they are the model itself, the config only describes it.
    for (const char* name : {"model.safetensors", "model.safetensors.index.json", "config.json"}) {
      if (std::filesystem::is_regular_file(path / name)) {
        from = path / name;
        break;
      }
    }
    ACCEL_CHECK_ARG(!from.empty(), "'", path.string(), "' holds no model weights or config: ", kExpected);
    config = from.filename() == "config.json";
  } else {
    ACCEL_CHECK_ARG(std::filesystem::is_regular_file(path), "no model at '", path.string(),
                    "': no such file or directory; ", kExpected,
                    " (a Hub model name is not looked up: download the model's folder first)");
    const bool is_index = path.filename().string().ends_with(".safetensors.index.json");
    from = path;
    config = !is_index && path.extension() == ".json";
    ACCEL_CHECK_ARG(config || is_index || path.extension() == ".safetensors", "'", path.string(),
                    "' is not a safetensors file, an index (.safetensors.index.json) or a config.json; ", kExpected);
  }
  if (source) *source = from;
  return config ? config_tensor_shapes(from) : checkpoint_tensor_shapes(from);
}

}  // namespace accel
