#pragma once
// Hooks around a unit's forward: Accelerate's ModelHook, add_hook_to_module
// and remove_hook_from_module, at accel's units (unit/unit.h). LibTorch
// modules have no forward hooks, so a hook acts where the model author put
// a unit; dispatch (dispatch.h) attaches its own hooks the same way.
//
//   struct Timer : accel::ModelHook {
//     void pre_forward(torch::nn::Module&, std::vector<torch::Tensor>&) override { start = now(); }
//     void post_forward(torch::nn::Module&, std::vector<torch::Tensor>& outputs) override { log(now() - start); }
//   };
//   accel::add_hook_to_unit(*model->blocks[0].slot(), std::make_shared<Timer>(), /*append=*/true);
//   ...
//   accel::remove_hook_from_unit(*model->blocks[0].slot());
//
// A unit holds a chain of hooks (Accelerate's SequentialHook): pre_forward
// runs them in order, each seeing the inputs the previous one left, and
// post_forward runs them in order on the outputs. A hook may replace the
// tensors in the vectors it is given: the block runs on the replaced inputs
// and the caller gets the replaced outputs (same count and order as the
// tensors in the arguments and result; see UnitHooks::replaces_tensors).
// A unit acted on by another mode (parameter sharding) takes no hooks.
#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/unit/unit.h"
#include "accel/util/export.h"

namespace accel {

class ACCEL_API ModelHook {
 public:
  virtual ~ModelHook();
  /// When attached to the unit whose block is `module`.
  virtual void init_hook(torch::nn::Module& module) {}
  /// Before the block's forward; `inputs`: the tensors of its arguments.
  virtual void pre_forward(torch::nn::Module& module, std::vector<torch::Tensor>& inputs) {}
  /// After it; `outputs`: the tensors of its result.
  virtual void post_forward(torch::nn::Module& module, std::vector<torch::Tensor>& outputs) {}
  /// When removed from the unit.
  virtual void detach_hook(torch::nn::Module& module) {}
};

/// Attaches `hook` to `unit` and calls its init_hook. With `append` it runs
/// after the hooks already there; without, those are removed first
/// (detach_hook called). Throws std::logic_error when another mode acts on
/// the unit, std::invalid_argument for a null hook.
ACCEL_API void add_hook_to_unit(UnitSlot& unit, std::shared_ptr<ModelHook> hook, bool append = false);

/// Removes every hook of `unit`, last first, calling each detach_hook.
ACCEL_API void remove_hook_from_unit(UnitSlot& unit);

/// remove_hook_from_unit on every unit of `model` (Accelerate's
/// remove_hook_from_submodules, the model included when it is a unit).
ACCEL_API void remove_hook_from_units(torch::nn::Module& model);

/// The hooks attached to `unit`, in the order they run.
ACCEL_API std::vector<std::shared_ptr<ModelHook>> hooks_of(const UnitSlot& unit);

}  // namespace accel
