#pragma once
// User objects that save_state saves along with the training state
// (Accelerator::register_for_checkpointing, Accelerate's custom_checkpoint_<i>):
// anything whose state is a set of named tensors. Counters and flags go in
// 0-d tensors (torch::tensor(step)).
//
//   struct TrainProgress {
//     int64_t epoch = 0;
//     accel::safetensors::NamedTensors state_dict() const { return {{"epoch", torch::tensor(epoch)}}; }
//     void load_state_dict(const accel::safetensors::OrderedTensors& d) { epoch = d["epoch"].item<int64_t>(); }
//   };
//
// A torch::nn::Module (an EMA copy of the model, say) is saved by its
// parameters and buffers under their dotted names.
#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>

#include <torch/nn/module.h>

#include "accel/checkpoint/safetensors.h"
#include "accel/util/export.h"

namespace accel {

template <class T>
concept TensorStateful = requires(T& object, const safetensors::OrderedTensors& state) {
  object.state_dict();
  object.load_state_dict(state);
};

/// How save_state reads and load_state restores one registered object.
struct ACCEL_API CheckpointHooks {
  std::function<safetensors::NamedTensors()> state_dict;
  std::function<void(const safetensors::OrderedTensors&)> load_state_dict;
};

/// A module's parameters and buffers as state; loading checks that every
/// name is present with its shape and dtype (std::runtime_error naming it)
/// before copying any.
ACCEL_API CheckpointHooks module_checkpoint_hooks(std::shared_ptr<torch::nn::Module> module);

template <class T>
CheckpointHooks checkpoint_hooks(std::shared_ptr<T> object) {
  if constexpr (std::is_base_of_v<torch::nn::Module, T>) {
    return module_checkpoint_hooks(std::move(object));
  } else {
    static_assert(TensorStateful<T>,
                  "register_for_checkpointing: expected a torch::nn::Module or an object with state_dict() "
                  "(named tensors) and load_state_dict(const safetensors::OrderedTensors&)");
    return CheckpointHooks{[object] {
                             auto state = object->state_dict();
                             if constexpr (std::is_convertible_v<decltype(state), safetensors::NamedTensors>) {
                               return safetensors::NamedTensors(std::move(state));
                             } else {  // an OrderedDict or map of name -> tensor
                               safetensors::NamedTensors out;
                               for (const auto& item : state) out.emplace_back(item.key(), item.value());
                               return out;
                             }
                           },
                           [object](const safetensors::OrderedTensors& state) { object->load_state_dict(state); }};
  }
}

}  // namespace accel
