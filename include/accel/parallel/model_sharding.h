#pragma once
// ModelSharding: what a mode that shards a model's parameters does around
// the prepared model's forward (PreparedModelCore calls it), and how the
// whole model is read back out of the shards. The fully sharded mode
// (parallel/fsdp/fully_sharded_model.h) is the one there is.
#include <functional>
#include <vector>

#include <torch/types.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API ModelSharding {
 public:
  virtual ~ModelSharding();
  /// Before the model's forward (the root unit's parameters gathered).
  virtual void before_forward() = 0;
  /// After it, with the tensors of its result.
  virtual void after_forward(std::vector<torch::Tensor>& outputs) = 0;
  /// The flag no_sync() clears: while false, backward keeps the full
  /// gradients and reduces nothing.
  virtual bool* sync_flag() = 0;
  /// The model's parameters and buffers by name as model_state() names
  /// them (checkpoint/model_files.h), whole, on the CPU, gathered one unit
  /// at a time; every rank calls it (it communicates).
  virtual safetensors::NamedTensors full_state() = 0;
  /// Gathers the whole model, runs `write` (which writes its parameters in
  /// place, e.g. a load), then keeps each rank's shards of what it wrote.
  /// Every rank calls it.
  virtual void write_full_parameters(const std::function<void()>& write) = 0;
};

}  // namespace accel
