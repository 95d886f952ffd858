#pragma once
// GradientReducer: how the model's gradients become this rank's averaged
// gradient slices (ZeRO's per-rank share of the flat gradient of each param
// group, fp32). Two ways, one per strategy family:
//   FullGradientReducer      ZeRO-1 / NO_SHARD: full gradients accumulate in
//                            flat buffers; one reduce-scatter (all-reduce)
//                            per optimizer step (full_gradient_reducer.h)
//   BucketedGradientReducer  ZeRO-2: buckets reduced while backward runs,
//                            only the slice kept (bucketed_gradient_reducer.h)
// Both average like DDP: the sum over ranks divided by the world size.
#include <torch/types.h>

#include <cstdint>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <vector>

#include "accel/parallel/zero/flat_layout.h"
#include "accel/parallel/zero/flat_parameters.h"
#include "accel/util/export.h"

namespace accel::zero {

/// What a reducer works on (shared with the engine that owns it).
struct ACCEL_API ReductionTarget {
  const FlatLayout* layout = nullptr;
  FlatParameters* params = nullptr;
  /// Per group: the flat range this rank's slice covers (everything under NO_SHARD).
  std::vector<FlatRange> owned;
  /// Per group: this rank's gradient slice, fp32, owned[g] long.
  std::vector<torch::Tensor> grad_slices;
  /// Null: one process (no communication).
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  /// The slices must be tensors of their own, never views of a reducer's
  /// buffers (optimizer offload: an update may still read them while the
  /// next backward runs).
  bool separate_slices = false;
  /// The slices stand for zero (zero_grad() was called) whatever they hold:
  /// the next backward overwrites them instead of adding, which saves a pass
  /// over them (a large one when they are in host memory). The engine
  /// zeroes them for real if the optimizer step comes first.
  bool slices_zero = true;

  int world_size() const { return group ? group->getSize() : 1; }
  int rank() const { return group ? group->getRank() : 0; }
};

class ACCEL_API GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  /// At the optimizer step: the slices hold the averaged gradients
  /// accumulated since the last zero_grad().
  virtual void finish() = 0;
  /// Forgets the accumulated gradients (the engine zeroes the slices).
  virtual void zero_grad() = 0;
  /// Bytes of gradient storage kept between steps besides the slices.
  virtual int64_t held_bytes() const = 0;
  /// The most bytes of gradient storage alive at once besides the slices.
  virtual int64_t peak_bytes() const { return held_bytes(); }
  /// Whether the slices are views of the reducer's own storage (then they
  /// cost no bytes of their own).
  virtual bool slices_are_views() const { return false; }
};

}  // namespace accel::zero
