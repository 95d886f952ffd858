#pragma once
// ZeRO steps the user's optimizer on flat slices: one tensor per param group
// holding pieces of many parameters. That is the same update only when the
// optimizer treats every element on its own (Adam, AdamW, SGD with momentum,
// RMSprop, Adagrad: their state and update are element-wise). An optimizer
// that looks at whole tensors or at all parameters together (LBFGS's line
// search and history, a per-tensor trust ratio as in LAMB) is not, so only
// the known element-wise families are accepted.
#include <torch/optim/optimizer.h>

#include <string>

#include "accel/util/export.h"

namespace accel::zero {

/// The family name ("AdamW", "SGD", ...) of an element-wise optimizer;
/// otherwise throws std::invalid_argument naming the optimizer's type.
ACCEL_API std::string require_element_wise(const torch::optim::Optimizer& optimizer);

}  // namespace accel::zero
