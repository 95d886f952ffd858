#pragma once
// An optimizer's state in a safe form: its tensors (exp_avg, momentum
// buffers, ...) for a safetensors file, everything else (type, param
// groups with their hyper-parameters, step counts) as JSON. Nothing in
// either runs code on load, unlike LibTorch's archive (a pickle).
//
// Parameters are numbered as PyTorch's state_dict numbers them: in param
// group order, then in order within the group. Tensor names are
// "state.<index>.<field>", e.g. "state.3.exp_avg_sq".
//
// Known optimizers: LibTorch's Adam, AdamW, SGD, RMSprop and Adagrad and
// their subclasses (accel::FusedAdamW). Others, LBFGS included (its state
// holds history lists), are refused with an error naming the type.
#include <string>

#include <torch/optim/optimizer.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/util/export.h"

namespace accel {

struct ACCEL_API OptimizerStateFiles {
  /// CPU copies of the state tensors, by name.
  safetensors::NamedTensors tensors;
  /// {"format":"accel.optimizer/1","type":"AdamW","param_groups":[{"params":[0,1],
  ///   "options":{"lr":...}}],"state":{"0":{"step":3}}}
  std::string json;
};

/// The state of `optimizer` (tensors copied to the CPU).
ACCEL_API OptimizerStateFiles optimizer_state(const torch::optim::Optimizer& optimizer);

/// Restores what optimizer_state() returned into an optimizer built over
/// the same parameters: hyper-parameters of each group (lr included, as
/// PyTorch's load_state_dict does) and each parameter's state, moved to
/// the parameter's device. Checks everything before changing anything: a
/// different optimizer type, group count or group sizes, a missing tensor,
/// or a tensor whose shape or dtype does not fit its parameter throws
/// std::runtime_error naming `source` (a file, for messages) and the item.
ACCEL_API void load_optimizer_state(torch::optim::Optimizer& optimizer, const safetensors::OrderedTensors& tensors,
                                    const std::string& json, const std::string& source);

}  // namespace accel
