#include "accel/parallel/pipeline/stage_module.h"

#include <algorithm>
#include <memory>
#include <string>

#include "accel/util/check.h"

namespace accel {

StageModuleImpl::StageModuleImpl(torch::nn::Module& model, PipelineStage stage) : stage_(std::move(stage)) {
  ACCEL_CHECK_ARG(stage_.forward, "StageModule: stage ", stage_.index, " has no forward");
  std::vector<bool> found(stage_.parameters.size(), false);
  // In the model's order, so the stage's parameters register (and DDP and
  // ZeRO bucket them) as the whole model's do.
  for (const auto& item : model.named_parameters()) {
    const auto it = std::find_if(stage_.parameters.begin(), stage_.parameters.end(),
                                 [&](const torch::Tensor& p) { return p.is_same(item.value()); });
    if (it == stage_.parameters.end()) continue;
    found[static_cast<size_t>(it - stage_.parameters.begin())] = true;
    const auto& name = item.key();
    const auto dot = name.rfind('.');
    auto& owner = dot == std::string::npos ? static_cast<torch::nn::Module&>(*this) : submodule(name.substr(0, dot));
    owner.register_parameter(dot == std::string::npos ? name : name.substr(dot + 1), item.value(),
                             item.value().requires_grad());
  }
  for (size_t i = 0; i < found.size(); ++i)
    ACCEL_CHECK_ARG(found[i], "StageModule: parameter ", i, " of stage ", stage_.index, " (shape ",
                    stage_.parameters[i].sizes(), ") is not a parameter of the model it was cut from");
}

torch::nn::Module& StageModuleImpl::submodule(const std::string& path) {
  torch::nn::Module* at = this;
  size_t begin = 0;
  while (begin <= path.size()) {
    auto end = path.find('.', begin);
    if (end == std::string::npos) end = path.size();
    const auto part = path.substr(begin, end - begin);
    auto children = at->named_children();
    if (auto* child = children.find(part)) {
      at = child->get();
    } else {
      at = at->register_module(part, std::make_shared<torch::nn::Module>()).get();
    }
    begin = end + 1;
  }
  return *at;
}

torch::Tensor StageModuleImpl::forward(const torch::Tensor& input) { return stage_.forward(input); }

}  // namespace accel
