#pragma once
// Where a model is cut into pipeline stages: only between its units
// (accel/unit/unit.h), the blocks the author marked. Stage i runs a
// contiguous span of the model's units in order; the first stage also runs
// what comes before the first unit (embeddings), the last what comes after
// the last one (final norm, head, loss): the model's own stage code decides
// that part (examples/gpt2/pipeline_parallel.h).
//
// The cut is given either as a number of stages (units spread evenly, the
// first stages taking one more where they do not divide) or as split
// points, torch.distributed.pipelining's split_spec: the module paths at
// which stages 1, 2, ... begin ("transformer.h.2"). A split point inside a
// unit ("transformer.h.1.attn") would split that unit and is refused,
// naming it.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "accel/unit/unit.h"
#include "accel/util/export.h"

namespace accel {

/// Units [begin, end) of a model's pipeline units.
struct ACCEL_API UnitSpan {
  int64_t begin = 0, end = 0;
  bool operator==(const UnitSpan&) const = default;
};

/// The units a pipeline cuts between: find_units(model) without the model
/// itself and without units nested in another unit, in order.
ACCEL_API std::vector<FoundUnit> pipeline_units(torch::nn::Module& model);

/// `units` units in `stages` contiguous spans, the first units % stages one
/// longer. Throws std::invalid_argument naming both counts when stages < 1
/// or stages > units (each stage needs at least one unit).
ACCEL_API std::vector<UnitSpan> even_stage_cut(int64_t units, int stages);

/// The spans of `model`'s pipeline units cut into `stages` stages: evenly
/// when `split_points` is empty, else at those paths (stages - 1 of them,
/// in model order, each the path of a pipeline unit other than the first).
/// Throws std::invalid_argument naming the value and what was expected: a
/// model without units, more stages than units, the wrong number of split
/// points, a split point inside a unit (naming the unit and its class), a
/// path that is no unit (listing the units), points out of order.
ACCEL_API std::vector<UnitSpan> cut_stages(torch::nn::Module& model, int stages,
                                           const std::vector<std::string>& split_points = {});

}  // namespace accel
