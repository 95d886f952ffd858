#pragma once
// Building a model without its memory: Accelerate's init_empty_weights and
// init_on_device for LibTorch modules.
//
//   auto model = accel::init_empty_weights([&] { return gpt2::GPT2(options); });
//   // every parameter and buffer is on the meta device: shapes and dtypes, no storage
//   accel::materialize(*model, torch::kCPU);  // uninitialised storage on the device, to load into
//
// How: Python switches the default device with a TorchFunctionMode, which
// LibTorch lacks. Here a scope puts LibTorch's DeferredInit dispatch key (the
// key reserved for deferred module initialisation, which nothing else in
// LibTorch uses) into the thread's included keys, and accel registers a
// fallback for it that sees every operator call: a factory function (an
// operator that takes no tensor and has a `device` argument: empty, zeros,
// ones, full, arange, rand, randn, linspace, eye, ...) whose device was left
// unset gets the scope's device; every other call passes through unchanged.
// So a module's constructor, which creates its tensors with torch::empty and
// friends and then initialises them in place (torch::nn::init), builds them
// on the meta device: nothing is allocated, and the in-place initialisers do
// nothing there.
//
// What it covers: parameters and buffers that a constructor creates with
// factory functions and no explicit device (LibTorch's own modules, and
// modules written the same way), initialised in place or computed from
// other such tensors. Buffers go to the device too (Accelerate's
// include_buffers=True): LibTorch saves every buffer, so a checkpoint holds
// them. The scope holds for the calling thread only, as Python's does.
//
// What it does not: a tensor made from data (torch::tensor({1, 2}),
// torch::from_blob) or read back (.item(), data_ptr) inside the scope needs
// real storage: torch::tensor fails there with LibTorch's "data is not
// allocated yet"; create such tensors with an explicit device
// (torch::tensor({1, 2}, torch::kCPU)), which the scope leaves alone, or
// after it. A factory call with an explicit device keeps it.
#include <optional>
#include <utility>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

/// While alive, factory functions called on this thread without a device
/// create their tensors on `device` (meta: no memory). Scopes nest; the
/// innermost wins, and the outer one is back when it ends.
class ACCEL_API InitOnDevice {
 public:
  explicit InitOnDevice(c10::Device device);
  ~InitOnDevice();
  InitOnDevice(const InitOnDevice&) = delete;
  InitOnDevice& operator=(const InitOnDevice&) = delete;

 private:
  std::optional<c10::Device> previous_;
};

/// InitOnDevice(meta): Accelerate's init_empty_weights.
class ACCEL_API InitEmptyWeights : public InitOnDevice {
 public:
  InitEmptyWeights() : InitOnDevice(c10::Device(c10::kMeta)) {}
};

/// The device the innermost scope on this thread redirects to, if any.
ACCEL_API std::optional<c10::Device> init_device();

/// `build()` with its factory functions on `device`; returns what it returns.
template <class Build>
auto init_on_device(c10::Device device, Build&& build) {
  InitOnDevice scope(device);
  return std::forward<Build>(build)();
}

/// `build()` on the meta device: the model with its shapes and no memory.
template <class Build>
auto init_empty_weights(Build&& build) {
  InitEmptyWeights scope;
  return std::forward<Build>(build)();
}

/// Makes `target` (a parameter or buffer handle) hold `value`'s data,
/// keeping its identity: every handle sharing its TensorImpl (the module's
/// member, the registered parameter, a tied use) sees the new data, and it
/// keeps requires_grad. Unlike Tensor::set_data it also moves between the
/// meta device and real ones. Throws std::invalid_argument when the shapes
/// differ, or when `target` requires grad and `value` is not floating-point.
ACCEL_API void replace_tensor_data(const torch::Tensor& target, const torch::Tensor& value);

/// Gives every meta parameter and buffer of `model` uninitialised storage
/// on `device`, in its dtype (tied tensors once). Tensors already on a
/// real device are left as they are. To fill them: load a checkpoint, or
/// call the modules' reset_parameters().
ACCEL_API void materialize(torch::nn::Module& model, c10::Device device);

}  // namespace accel
