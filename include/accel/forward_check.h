#pragma once
// ForwardCheck: a prepared model's forward must run through the prepared
// model. `model->forward(x)` compiles (operator-> reaches the user's module,
// as LibTorch users expect for `model->fc1`), but it skips what the wrapper
// adds around forward: DDP's reducer is never armed, so backward silently
// leaves each rank with its own gradients, and autocast is never entered.
// C++ cannot route one member call through `->` and not the others, so the
// check happens where the damage would: a gradient reaching the model's
// parameters in a backward that no forward of the wrapper prepared for
// throws std::logic_error saying what to call.
//
// Installed only where bypassing changes the result (DDP, mixed precision).
// A forward counts when it ran with grad mode on. Under DDP every backward
// needs a forward of its own (the reducer is armed once per forward, and a
// second backward through one forward is an error in DDP anyway), so the
// count is cleared at the end of each backward; under mixed precision alone
// a backward may reuse a forward (retain_graph), so it is not, and only a
// model never called through the wrapper is caught.
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "accel/util/export.h"

namespace accel {

class ACCEL_API ForwardCheck {
 public:
  /// Hooks every parameter of `module` that requires grad; `what` names
  /// what the wrapper adds ("DDP's all-reduce", "bf16 autocast") for the
  /// message; `per_backward`: each backward needs its own forward (DDP).
  ForwardCheck(torch::nn::Module& module, std::string what, bool per_backward);
  ~ForwardCheck();
  ForwardCheck(const ForwardCheck&) = delete;
  ForwardCheck& operator=(const ForwardCheck&) = delete;

  /// The wrapper ran a forward (call it from the wrapper's forward).
  void note_forward();

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::vector<std::pair<torch::Tensor, unsigned>> hooks_;
};

}  // namespace accel
