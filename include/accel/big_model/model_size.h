#pragma once
// How much memory a model takes, and its largest layer: what Accelerate's
// calculate_maximum_sizes reports, computed from the model's tensor shapes
// (tensor_shapes.h) instead of a module.
//
// The model is sized as `accelerate estimate-memory` builds it: in float32.
// Every floating-point tensor counts 4 bytes an element whatever dtype a
// checkpoint stores it in (the table then divides per dtype, see
// memory_estimate.h); other tensors keep their own size, a bool counting
// 1/8 byte as in Accelerate's dtype_byte_size.
//
// The largest layer is the largest of the units a device map would not
// split. The module tree is rebuilt from the dotted names; walking down from
// the top-level modules (and the model's own tensors), a module is one layer
// when it holds no module of its own (a Linear, an Embedding) or when it is
// a block of a numbered list ("h.3", "model.layers.0"); other modules are
// opened and their child modules walked, their own tensors left out, as
// Accelerate does. Accelerate takes the blocks from the model class's
// _no_split_modules, which for GPT-2, LLaMA and most transformers models
// are the blocks of the decoder's list, the rule used here.
//
// Sizes are doubles: a bool's 1/8 byte makes a size fractional. Every size
// is a multiple of 1/8 byte below 2^50 bytes, which a double holds exactly.
#include <string>
#include <vector>

#include <torch/types.h>

#include "accel/big_model/tensor_shapes.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API ModelSize {
  /// Bytes of all tensors.
  double total_bytes = 0;
  /// Bytes of the largest layer.
  double largest_layer_bytes = 0;
  /// The layers of that size, in module order ("h.0", ... when all blocks
  /// are equal).
  std::vector<std::string> largest_layers;
};

/// Bytes per element in the float32 model: 4 for floating-point dtypes,
/// 1/8 for bool, the dtype's own size otherwise.
ACCEL_API double float32_model_element_size(torch::ScalarType dtype);

/// The total and the largest layer of a model given by its tensors in
/// module order (the order only decides the order of equal layers).
/// Throws std::invalid_argument for a repeated name, an empty name part
/// ("a..b") or a name that is also another tensor's module ("a" and "a.b").
ACCEL_API ModelSize model_size(const TensorShapes& tensors);

}  // namespace accel
