#pragma once
// A model's tensors without their data: names, shapes and dtypes, for
// sizing a model before anything is allocated (estimate-memory, device
// maps). Two sources, neither of which reads a tensor:
//
//   checkpoint_tensor_shapes("llama-folder")        the safetensors headers
//   config_tensor_shapes("gpt2/config.json")        shapes derived from a
//                                                   Hugging Face config
//
// Names are the module's dotted names ("h.0.attn.c_attn.weight"), so the
// module tree can be rebuilt from them (see model_size.h).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

/// One tensor of a model, without data.
struct ACCEL_API TensorShape {
  std::string name;
  std::vector<int64_t> shape;
  torch::ScalarType dtype = torch::kFloat;

  int64_t numel() const;
};

/// A model's tensors in module order (each module's tensors before the next
/// module's).
using TensorShapes = std::vector<TensorShape>;

/// The tensors of a safetensors checkpoint (see find_checkpoint_files in
/// checkpoint/model_files.h for the accepted paths: a folder holding
/// model.safetensors or model.safetensors.index.json, one of those files).
/// Only the headers are read, and validated as every safetensors reader
/// does. Names come in "natural" order (numbered parts by number, h.2
/// before h.10), the order in which a model defines its blocks. Throws
/// std::runtime_error naming the file.
ACCEL_API TensorShapes checkpoint_tensor_shapes(const std::filesystem::path& path);

/// The tensors of the base model transformers' AutoModel builds from a
/// config.json (GPT2Model, LlamaModel, ...: no language-model head, as
/// `accelerate estimate-memory` sizes it), in float32, in the module's
/// definition order; buffers (LLaMA's rotary inv_freq) after parameters,
/// as Accelerate counts them. Keys missing from the file take the defaults
/// of transformers' config class. Only the model types of
/// config_model_types() are known: another is refused by name, as is a key
/// of the wrong type or a size that is not a positive integer.
ACCEL_API TensorShapes config_tensor_shapes(const std::filesystem::path& config_json);

/// The "model_type" values config_tensor_shapes() knows.
ACCEL_API std::vector<std::string> config_model_types();

/// The tensors of the model at `path`, from the best source it offers: the
/// safetensors weights (a folder holding model.safetensors or its index, or
/// one of those files), else a config.json (the folder's, or the file).
/// `source`, when given, receives the file the shapes came from (the
/// weights, the index or the config). Throws std::invalid_argument for a
/// path that holds none of them, naming it and what was expected.
ACCEL_API TensorShapes model_tensor_shapes(const std::filesystem::path& path, std::filesystem::path* source = nullptr);

}  // namespace accel
