#pragma once
// Which units of a model shard under full_shard, and which parameters each
// holds (ShardingOptions::auto_wrap_policy, FSDP's auto-wrap policies).
//
// Units are considered innermost first. A unit the policy picks takes every
// parameter of its module that no picked unit inside it took; the root
// unit (the model itself, path "") takes the rest, and always exists. A
// parameter reached through two places that belong to different units (a
// weight tied between two blocks, or between a block and the root) is
// refused, naming both: each unit frees its parameters when it leaves, so
// the other place would read freed memory.
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/parallel/sharding_options.h"
#include "accel/unit/unit.h"
#include "accel/util/export.h"

namespace accel::fsdp {

struct ACCEL_API PlannedUnit {
  /// Dotted module path; "" for the root.
  std::string path;
  /// Null for the root (the prepared model itself acts as its unit).
  std::shared_ptr<UnitSlot> slot;
  /// (name in the model, parameter), each tensor once, in named_parameters() order.
  std::vector<std::pair<std::string, torch::Tensor>> params;
};

/// The sharded units of `model` (in named_modules() order), then the root.
/// Throws std::invalid_argument for a transformer_cls_to_wrap name that no
/// unit answers to (listing the unit classes the model has), or a tied
/// parameter across units (naming both places).
ACCEL_API std::vector<PlannedUnit> plan_units(torch::nn::Module& model, const ShardingOptions& options);

}  // namespace accel::fsdp
