#include "accel/checkpoint/checkpointable.h"

#include <stdexcept>

#include <torch/utils.h>

#include "accel/checkpoint/model_files.h"
#include "accel/util/check.h"
#include "accel/util/format.h"

namespace accel {

CheckpointHooks module_checkpoint_hooks(std::shared_ptr<torch::nn::Module> module) {
  return CheckpointHooks{[module] {
                           safetensors::NamedTensors out;
                           for (auto& [name, t] : model_state(*module))
                             out.emplace_back(name, t.detach().to(torch::kCPU));
                           return out;
                         },
                         [module](const safetensors::OrderedTensors& state) {
                           auto own = model_state(*module);
                           for (const auto& [name, t] : own) {
                             const auto* saved = state.find(name);
                             ACCEL_CHECK(saved, "registered module: the checkpoint lacks '", name, "'");
                             ACCEL_CHECK(saved->sizes() == t.sizes() && saved->scalar_type() == t.scalar_type(),
                                         "registered module: '", name, "' is ",
                                         describe_tensor(saved->sizes(), saved->scalar_type()), " in the checkpoint, ",
                                         describe_tensor(t.sizes(), t.scalar_type()), " in the module");
                           }
                           torch::NoGradGuard no_grad;
                           for (auto& [name, t] : own) t.copy_(state[name]);
                         }};
}

}  // namespace accel
