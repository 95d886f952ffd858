#pragma once
// The model as Accelerate's device-map code walks a PyTorch module: children
// and own tensors in registration order, a module or tensor reached twice
// counted once (Python's remove_duplicate), class names for the no-split
// rule. Internal to big_model.
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <torch/nn/module.h>

#include "accel/unit/unit.h"

namespace accel::big_model {

class ModuleTree {
 public:
  explicit ModuleTree(torch::nn::Module& model);

  /// named_children(): the module's children, each module once.
  std::vector<std::pair<std::string, torch::nn::Module*>> children(torch::nn::Module& module) const;
  /// named_parameters(recurse=False) / named_buffers(recurse=False).
  std::vector<std::pair<std::string, torch::Tensor>> own_parameters(torch::nn::Module& module) const;
  std::vector<std::pair<std::string, torch::Tensor>> own_buffers(torch::nn::Module& module) const;
  /// named_modules(): every module once, parents first ("" the model).
  const std::vector<std::pair<std::string, torch::nn::Module*>>& modules() const { return modules_; }

  /// The names the module answers to: a unit's class_names(), else its C++
  /// class with and without namespace and "Impl".
  std::vector<std::string> class_names(torch::nn::Module& module) const;
  bool is_class(torch::nn::Module& module, const std::vector<std::string>& names) const;
  /// The unit wrapping `module`, if any.
  std::shared_ptr<UnitSlot> unit(const torch::nn::Module& module) const;

 private:
  std::vector<std::pair<std::string, torch::nn::Module*>> modules_;
  std::unordered_map<const torch::nn::Module*, std::shared_ptr<UnitSlot>> units_;
};

}  // namespace accel::big_model
