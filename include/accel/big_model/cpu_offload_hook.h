#pragma once
// Accelerate's cpu_offload_with_hook: a whole model kept in host memory
// until it runs, then kept on its execution device until told to leave. For
// pipelines of models that run in turn (an encoder, then a denoiser many
// times, then a decoder), each on the GPU only while it is the one in use.
//
//   accel::Unit<Encoder> encoder(Encoder(), "Encoder");
//   accel::Unit<Decoder> decoder(Decoder(), "Decoder");
//   auto hook_1 = accel::cpu_offload_with_hook(encoder.slot(), torch::kCUDA);
//   auto hook_2 = accel::cpu_offload_with_hook(decoder.slot(), torch::kCUDA, hook_1);
//   auto hidden = encoder(tokens);   // the encoder moves to the GPU and stays
//   auto out = decoder(hidden);      // the encoder goes back to the CPU first
//   hook_2->offload();               // the last model leaves when told
//
// The rules, as Accelerate's CpuOffload hook: attaching it moves the model
// to the CPU. Before each forward: when there is a previous hook and its
// model's first parameter is not on the CPU, that model is moved to the CPU
// (and the device's cached memory released); then, when the model's first
// parameter is not on the execution device, the whole model moves there
// and the tensor arguments with it (arguments are left alone when the
// model is there already, as Accelerate does). Outputs stay on the
// execution device. The model must be a unit (unit/unit.h): the hook is
// appended to its hooks (hooks.h).
#include <memory>

#include <c10/core/Device.h>

#include "accel/unit/unit.h"
#include "accel/util/export.h"

namespace accel {

class ModelHook;

/// What cpu_offload_with_hook returns (Accelerate's UserCpuOffloadHook).
class ACCEL_API UserCpuOffloadHook {
 public:
  UserCpuOffloadHook(std::shared_ptr<UnitSlot> unit, std::shared_ptr<ModelHook> hook);
  /// Moves the model back to the CPU.
  void offload();
  /// Removes every hook of the model's unit; the model stays where it is.
  void remove();
  torch::nn::Module& model() const { return unit_->module(); }
  const std::shared_ptr<ModelHook>& hook() const { return hook_; }

 private:
  std::shared_ptr<UnitSlot> unit_;
  std::shared_ptr<ModelHook> hook_;
};

/// Attaches the offload hook to `model` (a unit's slot: Unit::slot()) and
/// moves the model to the CPU. `prev_module_hook`: the hook of the model
/// that runs before this one, offloaded when this one runs. Throws
/// std::invalid_argument for a null slot or a model without parameters
/// (its device is its first parameter's), std::logic_error when another
/// mode (parameter sharding) acts on the unit.
ACCEL_API std::shared_ptr<UserCpuOffloadHook> cpu_offload_with_hook(
    const std::shared_ptr<UnitSlot>& model, c10::Device execution_device,
    std::shared_ptr<UserCpuOffloadHook> prev_module_hook = nullptr);

}  // namespace accel
