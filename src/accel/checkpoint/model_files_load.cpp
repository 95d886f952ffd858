// Loading model files of either layout, with the index treated as untrusted.
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "accel/checkpoint/model_files.h"
#include "accel/util/check.h"
#include "accel/util/format.h"
#include "accel/util/user_json.h"

namespace accel {
namespace {

// An index of a model with millions of tensors is a few hundred MB at most.
constexpr uintmax_t kMaxIndexSize = 1'000'000'000;

template <typename... Parts>
[[noreturn]] void bad_index(const std::filesystem::path& index, const Parts&... problem) {
  fail<std::runtime_error>("checkpoint index '", index.string(), "': ", problem...);
}

// A shard named by an index must be a plain file name in the index's
// directory: an index must not send the loader elsewhere ("../x", "/etc").
bool plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

CheckpointFiles read_index(const std::filesystem::path& index) {
  std::error_code ec;
  auto size = std::filesystem::file_size(index, ec);
  if (ec) bad_index(index, "cannot read: ", ec.message());
  if (size > kMaxIndexSize) bad_index(index, "is ", size, " bytes, too large for an index");
  std::ifstream in(index, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  nlohmann::json root;
  try {
    root = parse_user_json(text);
  } catch (const std::invalid_argument& e) {
    bad_index(index, e.what());
  }
  if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object()) {
    bad_index(index, "has no \"weight_map\" object");
  }
  CheckpointFiles out;
  out.index_file = index;
  std::set<std::string> files;
  for (const auto& [name, file] : root["weight_map"].items()) {
    if (!file.is_string()) bad_index(index, "weight_map entry '", excerpt(name), "' is not a file name");
    const auto& file_name = file.get_ref<const std::string&>();
    if (!plain_file_name(file_name)) {
      bad_index(index, "tensor '", excerpt(name), "' is mapped to '", excerpt(file_name),
                "', which is not a file in the index's directory");
    }
    files.insert(file_name);
    out.weight_map[name] = index.parent_path() / file_name;
  }
  for (const auto& name : files) {
    auto path = index.parent_path() / name;
    if (!std::filesystem::is_regular_file(path)) bad_index(index, "shard '", name, "' is missing");
    out.files.push_back(path);
  }
  return out;
}

CheckpointFiles single_file(const std::filesystem::path& file) {
  CheckpointFiles out;
  out.files.push_back(file);
  safetensors::File f(file);
  for (const auto& t : f.header().tensors) out.weight_map[t.name] = file;
  return out;
}

// Opens each file once and finds every tensor of the weight map in it.
struct OpenCheckpoint {
  std::vector<std::unique_ptr<safetensors::File>> files;
  // Each tensor with the file that holds it, in file order, then offset order.
  std::vector<std::pair<std::string, const safetensors::File*>> tensors;

  explicit OpenCheckpoint(const CheckpointFiles& ckpt) {
    std::unordered_map<std::string, const safetensors::File*> by_path;
    for (const auto& path : ckpt.files) {
      files.push_back(std::make_unique<safetensors::File>(path));
      by_path[path.string()] = files.back().get();
    }
    for (const auto& file : files) {
      for (const auto& t : file->header().tensors) {
        auto it = ckpt.weight_map.find(t.name);
        // A tensor the index places in another file (or not at all) is not
        // this file's to give: the index decides.
        if (it != ckpt.weight_map.end() && it->second == file->path()) tensors.emplace_back(t.name, file.get());
      }
    }
    for (const auto& [name, path] : ckpt.weight_map) {
      const auto* file = by_path.at(path.string());
      if (!file->contains(name)) {
        bad_index(ckpt.index_file, "says tensor '", name, "' is in '", path.filename().string(),
                  "', which does not hold it");
      }
    }
  }
};

template <class Items>
void append_list(std::ostringstream& out, const std::string& title, const Items& items) {
  if (items.empty()) return;
  out << "\n  " << items.size() << " " << title << ": ";
  constexpr size_t kShown = 10;
  for (size_t i = 0; i < items.size() && i < kShown; ++i) out << (i ? ", " : "") << items[i];
  if (items.size() > kShown) out << ", ... (" << items.size() - kShown << " more)";
}

}  // namespace

std::optional<std::string> detail::tie_key(const torch::Tensor& t) {
  if (!t.defined() || t.is_meta() || !t.has_storage()) return std::nullopt;
  std::ostringstream key;
  key << t.storage().unsafeGetStorageImpl() << '|' << t.storage_offset() << '|' << t.sizes() << '|' << t.strides()
      << '|' << t.scalar_type() << '|' << t.device();
  return key.str();
}

CheckpointFiles find_checkpoint_files(const std::filesystem::path& path, const std::string& weights_name) {
  if (std::filesystem::is_directory(path)) {
    auto single = path / weights_name;
    auto index = path / index_file_name(weights_name);
    // A single file wins over an index, as in transformers; accel's
    // save_model never leaves both.
    if (std::filesystem::is_regular_file(single)) return single_file(single);
    if (std::filesystem::is_regular_file(index)) return read_index(index);
    fail<std::runtime_error>("no model weights in '", path.string(), "': expected ", weights_name, " or ",
                             index_file_name(weights_name));
  }
  ACCEL_CHECK(std::filesystem::is_regular_file(path), "no model weights at '", path.string(),
              "': no such file or directory");
  if (path.extension() == ".json") return read_index(path);
  return single_file(path);
}

safetensors::OrderedTensors load_checkpoint(const std::filesystem::path& path, torch::Device device) {
  OpenCheckpoint ckpt(find_checkpoint_files(path));
  safetensors::OrderedTensors out;
  out.reserve(ckpt.tensors.size());
  for (const auto& [name, file] : ckpt.tensors) {
    out.insert(name, device.is_cpu() ? file->get(name) : file->get(name, device));
  }
  return out;
}

std::string LoadReport::describe() const {
  std::ostringstream out;
  out << (ok() ? "checkpoint matches the model" : "checkpoint does not match the model:");
  append_list(out, "missing keys (in the model, not in the checkpoint)", missing_keys);
  append_list(out, "unexpected keys (in the checkpoint, not in the model)", unexpected_keys);
  std::vector<std::string> mismatches;
  for (const auto& m : mismatched)
    mismatches.push_back(m.name + " (model " + m.expected + ", checkpoint " + m.found + ")");
  append_list(out, "shape/dtype mismatches", mismatches);
  return out.str();
}

LoadReport load_model_weights(torch::nn::Module& model, const std::filesystem::path& path,
                              const LoadModelOptions& options) {
  OpenCheckpoint ckpt(find_checkpoint_files(path, options.weights_name()));
  auto state = model_state(model);
  std::unordered_map<std::string, const safetensors::File*> in_checkpoint(ckpt.tensors.begin(), ckpt.tensors.end());

  // First compare headers with the model; copy only once that is settled.
  LoadReport report;
  std::vector<std::pair<torch::Tensor, const safetensors::File*>> to_copy;
  std::set<std::string> loaded_ties;
  std::vector<std::pair<std::string, torch::Tensor>> absent;
  std::set<std::string> model_names;
  for (auto& [name, tensor] : state) {
    model_names.insert(name);
    auto it = in_checkpoint.find(name);
    if (it == in_checkpoint.end()) {
      absent.emplace_back(name, tensor);
      continue;
    }
    const auto& info = it->second->info(name);
    auto file_type = safetensors::to_scalar_type(info.dtype);
    bool shape_ok = tensor.sizes() == c10::IntArrayRef(info.shape);
    bool dtype_ok = tensor.scalar_type() == file_type || options.allow_dtype_cast();
    if (!shape_ok || !dtype_ok) {
      report.mismatched.push_back(
          {name, describe_tensor(tensor.sizes(), tensor.scalar_type()), describe_tensor(info.shape, file_type)});
      continue;
    }
    to_copy.emplace_back(tensor, it->second);
    report.loaded.push_back(name);
    if (auto key = detail::tie_key(tensor)) loaded_ties.insert(*key);
  }
  // A name the checkpoint lacks is filled when it is the same tensor as a
  // loaded name (saved once, see model_files.h).
  for (const auto& [name, tensor] : absent) {
    auto key = detail::tie_key(tensor);
    if (!key || !loaded_ties.count(*key)) report.missing_keys.push_back(name);
  }
  for (const auto& [name, file] : ckpt.tensors) {
    if (!model_names.count(name)) report.unexpected_keys.push_back(name);
  }
  ACCEL_CHECK(!options.strict() || report.ok(), "load_model_weights('", path.string(), "'): ", report.describe(),
              "\n  (nothing was loaded; strict(false) loads the tensors that match)");
  TransferProgress progress("load_model", options.progress());
  int64_t bytes = 0;
  for (size_t i = 0; i < to_copy.size(); ++i)
    bytes += static_cast<int64_t>(to_copy[i].second->info(report.loaded[i]).nbytes());
  TransferProgress::expect(bytes);
  for (size_t i = 0; i < to_copy.size(); ++i) {
    to_copy[i].second->read_into(report.loaded[i], to_copy[i].first, options.allow_dtype_cast());
  }
  return report;
}

}  // namespace accel
