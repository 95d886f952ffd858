#pragma once
// ModelSharding: what a mode that shards a model's parameters does around
// the prepared model's forward (PreparedModelCore calls it), and how the
// whole model is read back out of the shards. The fully sharded mode
// (parallel/fsdp/fully_sharded_model.h) is the one there is.
#include <filesystem>
#include <functional>
#include <vector>

#include <torch/types.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/util/export.h"

namespace accel {

class SliceSet;  // checkpoint/tensor_slices.h

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

  /// Whether save_state writes each rank's slices (SHARDED_STATE_DICT)
  /// instead of the whole model.
  virtual bool sharded_state_dict() const = 0;
  /// Writes this rank's slices of every parameter to `file` (a slice file,
  /// checkpoint/tensor_slices.h; rank 0 adds the buffers whole), with the
  /// number of ranks writing in its metadata ("world_size").
  virtual void save_slices(const std::filesystem::path& file, int rank, int world_size) const = 0;
  /// Reads this rank's part of every parameter, and the buffers, from
  /// slices any number of ranks wrote; throws naming a parameter the
  /// slices lack or give another shape, or a slice of no parameter.
  virtual void load_slices(const SliceSet& slices) = 0;
};

}  // namespace accel
