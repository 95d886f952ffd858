#pragma once
// safetensors files for LibTorch tensors: the counterpart of Python's
// `safetensors.torch` (save_file, load_file, safe_open), writing the same
// bytes Python writes and reading what Python writes.
//
// Reading maps the file into memory. A CPU tensor read from it shares the
// mapping (no copy) when its bytes are aligned for its dtype, which they are
// in files written by accel or Python; it keeps the mapping alive for as
// long as it lives. The mapping is private: writing into such a tensor
// copies the touched pages and never changes the file. Copies (read_into,
// get(name, device)) are made one tensor at a time: straight from the file
// (pread) into a dense CPU destination of the same dtype, else from the
// mapping, so loading a checkpoint to a GPU never holds the whole file in
// host memory.
//
// Every header is validated (safetensors_format.h) before any byte of data
// is touched; a file that lies about its contents is refused with an error
// naming it.
#include <concepts>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <torch/ordered_dict.h>
#include <torch/types.h>

#include "accel/checkpoint/safetensors_format.h"
#include "accel/util/export.h"

namespace accel {
class AtomicFile;
}

namespace accel::safetensors {

/// Named tensors in a chosen order (what save_file takes).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
/// Named tensors as LibTorch returns them (named_parameters(), load_file()),
/// in order. (accel::TensorDict is another thing: a batch of named tensors.)
using OrderedTensors = torch::OrderedDict<std::string, torch::Tensor>;
/// The "__metadata__" map of a file.
using Metadata = std::map<std::string, std::string>;

/// The LibTorch dtype of a file dtype.
ACCEL_API torch::ScalarType to_scalar_type(Dtype dtype);
/// The file dtype of a LibTorch dtype; throws std::invalid_argument naming
/// the dtype when safetensors has none for it (e.g. complex double, qint8).
ACCEL_API Dtype from_scalar_type(torch::ScalarType type);

/// An open safetensors file (Python's `safe_open`).
class ACCEL_API File {
 public:
  /// Maps and validates `path`. Throws std::runtime_error naming the file.
  explicit File(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const Header& header() const { return header_; }
  const Metadata& metadata() const { return header_.metadata; }
  /// Tensor names in file order.
  std::vector<std::string> keys() const;
  bool contains(std::string_view name) const { return by_name_.find(name) != by_name_.end(); }
  /// The entry of `name`; throws std::out_of_range naming file and tensor.
  const TensorInfo& info(std::string_view name) const;

  /// The tensor on the CPU, sharing the mapping when aligned, else a copy.
  torch::Tensor get(std::string_view name) const;
  /// The tensor copied onto `device` (a CPU copy owns its memory).
  torch::Tensor get(std::string_view name, torch::Device device) const;
  /// Copies the tensor into `dst` (any device; same shape and dtype, or a
  /// dtype `dst` can be cast to when `allow_cast`). Throws naming the file,
  /// the tensor and both shapes/dtypes when they differ.
  void read_into(std::string_view name, torch::Tensor& dst, bool allow_cast = false) const;

 private:
  struct Mapping;
  torch::Tensor view(const TensorInfo& info) const;
  // Reads the bytes straight into a dense CPU tensor of the file's dtype;
  // false (nothing done) for any other destination.
  bool read_bytes(const TensorInfo& info, torch::Tensor& dst) const;
  // Starts the kernel reading this tensor's bytes and what follows.
  void will_need(const TensorInfo& info) const;

  std::filesystem::path path_;
  std::shared_ptr<Mapping> mapping_;
  Header header_;
  // Tensor index in header_.tensors by name: a lookup per tensor must not
  // scan the header (a file may hold 200,000 tensors).
  std::map<std::string, size_t, std::less<>> by_name_;
};

/// All tensors of a file, in file order: on the CPU they share the mapping
/// (see File::get); on another device they are copies.
ACCEL_API OrderedTensors load_file(const std::filesystem::path& path, torch::Device device = torch::kCPU);
/// The "__metadata__" of a file (reads the header only).
ACCEL_API Metadata load_metadata(const std::filesystem::path& path);
/// All tensors of a file held in memory (copies; `bytes` may be freed).
ACCEL_API OrderedTensors load(std::string_view bytes);

/// Writes the tensors to `path` atomically (atomic_file.h), laid out as
/// Python lays them out. Tensors may live on any device and be
/// non-contiguous; they are copied to the CPU one at a time. Throws
/// std::invalid_argument for a repeated name, an undefined, sparse or meta
/// tensor, or a dtype safetensors lacks; the file is then left untouched.
ACCEL_API void save_file(const NamedTensors& tensors, const std::filesystem::path& path, const Metadata& metadata = {});
/// The pairs of an OrderedDict (e.g. named_parameters()), in order.
ACCEL_API NamedTensors to_named(const OrderedTensors& tensors);
// A template so that a braced list ({{"w", t}}) picks the overload above.
template <class Dict>
requires std::same_as<Dict, OrderedTensors>
void save_file(const Dict& tensors, const std::filesystem::path& path, const Metadata& metadata = {}) {
  save_file(to_named(tensors), path, metadata);
}
/// save_file's bytes appended to an open file (for callers that commit
/// several files together, see model_files.h).
ACCEL_API void write_tensors(AtomicFile& out, const NamedTensors& tensors, const Metadata& metadata = {});
/// The bytes of the file save_file would write.
ACCEL_API std::string save(const NamedTensors& tensors, const Metadata& metadata = {});

}  // namespace accel::safetensors
