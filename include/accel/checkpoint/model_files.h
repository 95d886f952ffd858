#pragma once
// Model weights on disk in Hugging Face's layout, so that transformers,
// Accelerate and safetensors read what accel writes and the other way round:
//
//   small model:  <dir>/model.safetensors
//   large model:  <dir>/model-00001-of-00003.safetensors ...
//                 <dir>/model.safetensors.index.json
//                   {"metadata": {"total_size": <bytes>},
//                    "weight_map": {"<tensor name>": "<shard file>", ...}}
//
// Names are the module's dotted names ("layers.0.attn.weight"), so a
// LibTorch model whose names match a Hugging Face model loads its
// checkpoint directly. The state is Python's state_dict order: each module
// in pre-order with its own parameters, then its own buffers.
//
// Sharding follows huggingface_hub's split_torch_state_dict_into_shards,
// which Accelerate's save_model uses: tensors are taken in state order and
// a shard is closed when the next tensor would take it past max_shard_size;
// a tensor larger than the limit gets a shard of its own.
//
// The same tensor under several names (tied weights, e.g. an embedding and
// the output projection) is saved once, under its first name, as
// Accelerate's save_model does; loading fills the other names through the
// tie. Tensors that are different views of one storage are each written
// with their own bytes (Accelerate would keep only one of them).
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/tracking/transfer_progress.h"
#include "accel/util/export.h"

namespace accel {

/// "10GB" -> 10 * 10^9, "10GiB" -> 10 * 2^30; units TB/GB/MB/KB (powers of
/// 10) and TiB/GiB/MiB/KiB (powers of 2), any case, decimals allowed
/// ("1.5GB"); a trailing lowercase "b" after the prefix means bits, as in
/// Accelerate ("5Gb" = 5 * 10^9 / 8 bytes); plain digits are bytes.
/// Throws std::invalid_argument naming the text and the accepted forms.
ACCEL_API int64_t parse_size(std::string_view size);

/// The model's tensors by dotted name, in Python's state_dict order.
ACCEL_API safetensors::NamedTensors model_state(const torch::nn::Module& model);

/// File names for weights named `weights_name` ("model.safetensors"):
/// the shard `index` (1-based) of `count`, and the index file.
ACCEL_API std::string shard_file_name(const std::string& weights_name, int index, int count);
ACCEL_API std::string index_file_name(const std::string& weights_name);

struct ACCEL_API SaveModelOptions {
  /// The size limit of a shard, see parse_size(). Default "10GB".
  SaveModelOptions& max_shard_size(std::string_view size) {
    max_shard_size_ = parse_size(size);
    return *this;
  }
  SaveModelOptions& max_shard_size(int64_t bytes);
  int64_t max_shard_size() const { return max_shard_size_; }

  /// Only safetensors is written: `false` (a pickled .bin in Python) is
  /// refused, since accel never writes a format that runs code on load.
  TORCH_ARG(bool, safe_serialization) = true;
  /// The file name when unsharded; shards insert "-00001-of-00002" before
  /// ".safetensors" and the index appends ".index.json".
  TORCH_ARG(std::string, weights_name) = "model.safetensors";
  /// Stored in every file's "__metadata__" (Accelerate writes format=pt).
  TORCH_ARG(safetensors::Metadata, metadata) = safetensors::Metadata{{"format", "pt"}};
  /// The bar a large save shows (tracking/transfer_progress.h).
  TORCH_ARG(TransferProgressOptions, progress) = {};

 private:
  int64_t max_shard_size_ = 10'000'000'000;
};

/// What a save wrote.
struct ACCEL_API SavedModel {
  /// Weight files written, in order (shards, or the single file).
  std::vector<std::string> files;
  /// Written only when sharded; empty otherwise.
  std::string index_file;
  /// Bytes of tensor data over all files.
  int64_t total_size = 0;
  /// Names left out because they are the same tensor as an earlier name.
  std::vector<std::string> removed_tied;
  bool sharded() const { return !index_file.empty(); }
};

/// A planned split: the tensors of each shard, in state order.
struct ACCEL_API ShardPlan {
  std::vector<safetensors::NamedTensors> shards;
  int64_t total_size = 0;
  std::vector<std::string> removed_tied;
};

/// Drops tied duplicates and splits into shards (see the top of this file).
ACCEL_API ShardPlan plan_shards(const safetensors::NamedTensors& tensors, int64_t max_shard_size);

/// Saves the model's weights into `dir` (created if needed) from the main
/// process; every process then waits for it (wait_for_everyone), so all of
/// them may call this. Each file is written to a temporary name first and
/// all are renamed into place together, index last; files of an earlier
/// save that the new layout does not use (stale shards, an index or
/// model.safetensors of the other layout) are removed afterwards, so the
/// directory never holds two layouts a loader could confuse.
ACCEL_API SavedModel save_model(const torch::nn::Module& model, const std::filesystem::path& dir,
                                const SaveModelOptions& options = {});
ACCEL_API SavedModel save_model(const safetensors::NamedTensors& tensors, const std::filesystem::path& dir,
                                const SaveModelOptions& options = {});

/// The writing step of save_model, on the calling process alone (no rank
/// check, no barrier): for callers that already decide who writes.
ACCEL_API SavedModel write_model_files(const safetensors::NamedTensors& tensors, const std::filesystem::path& dir,
                                       const SaveModelOptions& options = {});

/// The weight files of a checkpoint and which file holds each tensor.
struct ACCEL_API CheckpointFiles {
  std::vector<std::filesystem::path> files;
  /// Tensor name -> file, from the index (or from the single file's header).
  std::map<std::string, std::filesystem::path> weight_map;
  /// The index file when sharded.
  std::filesystem::path index_file;
};

/// Finds the weights at `path`: a .safetensors file, an index .json file,
/// or a directory holding `weights_name` or its index. The index is
/// untrusted: a shard name that leaves the directory, a missing shard or
/// malformed JSON is refused with an error naming the index.
ACCEL_API CheckpointFiles find_checkpoint_files(const std::filesystem::path& path,
                                                const std::string& weights_name = "model.safetensors");

/// Every tensor of a checkpoint (either layout), on `device`; CPU tensors
/// share the files' mappings (see safetensors.h).
ACCEL_API safetensors::OrderedTensors load_checkpoint(const std::filesystem::path& path,
                                                      torch::Device device = torch::kCPU);

struct ACCEL_API LoadModelOptions {
  /// Refuse (std::runtime_error, model untouched) unless every model tensor
  /// is found with its shape and dtype and the checkpoint has nothing else.
  TORCH_ARG(bool, strict) = true;
  /// Copy tensors of another dtype with a cast instead of reporting them.
  TORCH_ARG(bool, allow_dtype_cast) = false;
  TORCH_ARG(std::string, weights_name) = "model.safetensors";
  /// The bar a large load shows (tracking/transfer_progress.h).
  TORCH_ARG(TransferProgressOptions, progress) = {};
};

/// What a load found.
struct ACCEL_API LoadReport {
  struct Mismatch {
    std::string name;
    std::string expected;  // the model's shape and dtype, e.g. "[4, 8] Float"
    std::string found;     // the checkpoint's
  };
  /// Model tensors the checkpoint lacks (tied names filled through the tie
  /// are not missing).
  std::vector<std::string> missing_keys;
  /// Checkpoint tensors the model lacks.
  std::vector<std::string> unexpected_keys;
  /// Tensors present in both whose shape or dtype differ (not loaded).
  std::vector<Mismatch> mismatched;
  /// Tensors copied into the model.
  std::vector<std::string> loaded;

  bool ok() const { return missing_keys.empty() && unexpected_keys.empty() && mismatched.empty(); }
  /// A readable account of what is wrong, for errors and logs.
  std::string describe() const;
};

/// Loads a checkpoint of either layout (see find_checkpoint_files) into the
/// model's parameters and buffers, wherever they live. In strict mode the
/// headers are checked first and nothing is copied unless all agree.
ACCEL_API LoadReport load_model_weights(torch::nn::Module& model, const std::filesystem::path& path,
                                        const LoadModelOptions& options = {});

namespace detail {
/// Identifies a tensor's view (storage, offset, sizes, strides, dtype):
/// equal for tied names. nullopt for a tensor without storage (meta).
std::optional<std::string> tie_key(const torch::Tensor& tensor);
}  // namespace detail

}  // namespace accel
