#pragma once
// `accelerate estimate-memory`'s table: for each dtype a model could be
// loaded in, the size of its largest layer, its total size, and the memory
// to train it with Adam, from the float32 sizes of model_size.h:
//
//   dtype     sizes              training with Adam (batch size 1)
//   float32   as measured        4x: model, gradients, 2 Adam states
//   float16   half               2x the float32 size: float32 master weights and
//   bfloat16  half               Adam states (Accelerate's mixed precision)
//   int8      a quarter          none (Accelerate prints N/A)
//   int4      an eighth          none
//
// These are Accelerate's rules (estimate_training_usage in
// accelerate/commands/estimate.py), activations not included. Accelerate
// accepts float32, float16, int8 and int4; bfloat16 is accel's addition,
// sized as float16 (Accelerate's training rule already covers it).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "accel/big_model/model_size.h"
#include "accel/util/export.h"

namespace accel {

/// One row of the table.
struct ACCEL_API MemoryEstimate {
  std::string dtype;
  double largest_layer_bytes = 0;
  double total_bytes = 0;
  /// None for the integer dtypes, which Adam does not train.
  std::optional<double> training_bytes;
};

/// The dtype names estimate_memory() accepts.
ACCEL_API std::vector<std::string> estimate_dtypes();
/// The dtypes `accelerate estimate-memory` shows by default: float32,
/// float16, int8, int4.
ACCEL_API std::vector<std::string> default_estimate_dtypes();

/// The row for `dtype`; throws std::invalid_argument naming an unknown
/// dtype and the accepted ones.
ACCEL_API MemoryEstimate estimate_memory(const ModelSize& size, std::string_view dtype);

/// A size as Accelerate's convert_bytes writes it: in the largest unit of
/// bytes, KB, MB, GB, TB, PB (powers of 1024) under which it is below 1024,
/// rounded to 2 decimals and written as Python writes a float ("24.74 GB",
/// "12.0 MB", "1.12 KB" for 1.125 KB: ties round to even). One difference:
/// Accelerate writes a size below 1 KB that Python holds as an int without
/// ".0" ("512 bytes"); this writes every size as a float ("512.0 bytes").
ACCEL_API std::string format_bytes(double bytes);

/// The table `accelerate estimate-memory` prints, box-drawing characters and
/// all, titled "Memory Usage for loading `<model>`".
ACCEL_API std::string memory_table(const std::vector<MemoryEstimate>& rows, std::string_view model);

}  // namespace accel
