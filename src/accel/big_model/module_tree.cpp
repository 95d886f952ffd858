#include "accel/big_model/module_tree.h"

#include <algorithm>
#include <unordered_set>

namespace accel::big_model {

namespace {

std::vector<std::pair<std::string, torch::Tensor>> unique_tensors(
    const torch::OrderedDict<std::string, torch::Tensor>& d) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::unordered_set<const c10::TensorImpl*> seen;
  for (const auto& item : d)
    if (item.value().defined() && seen.insert(item.value().unsafeGetTensorImpl()).second)
      out.emplace_back(item.key(), item.value());
  return out;
}

void walk(torch::nn::Module& module, const std::string& path, std::unordered_set<const torch::nn::Module*>& seen,
          std::vector<std::pair<std::string, torch::nn::Module*>>& out) {
  if (!seen.insert(&module).second) return;
  out.emplace_back(path, &module);
  for (const auto& child : module.named_children())
    walk(*child.value(), path.empty() ? child.key() : path + "." + child.key(), seen, out);
}

}  // namespace

ModuleTree::ModuleTree(torch::nn::Module& model) {
  std::unordered_set<const torch::nn::Module*> seen;
  walk(model, "", seen, modules_);
  for (auto& found : find_units(model)) units_.emplace(&found.slot->module(), found.slot);
}

std::vector<std::pair<std::string, torch::nn::Module*>> ModuleTree::children(torch::nn::Module& module) const {
  std::vector<std::pair<std::string, torch::nn::Module*>> out;
  std::unordered_set<const torch::nn::Module*> seen;
  for (const auto& child : module.named_children())
    if (seen.insert(child.value().get()).second) out.emplace_back(child.key(), child.value().get());
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> ModuleTree::own_parameters(torch::nn::Module& module) const {
  return unique_tensors(module.named_parameters(/*recurse=*/false));
}

std::vector<std::pair<std::string, torch::Tensor>> ModuleTree::own_buffers(torch::nn::Module& module) const {
  return unique_tensors(module.named_buffers(/*recurse=*/false));
}

std::shared_ptr<UnitSlot> ModuleTree::unit(const torch::nn::Module& module) const {
  auto it = units_.find(&module);
  return it == units_.end() ? nullptr : it->second;
}

std::vector<std::string> ModuleTree::class_names(torch::nn::Module& module) const {
  if (auto slot = unit(module)) return slot->class_names();
  std::vector<std::string> names;
  auto add = [&](const std::string& n) {
    if (!n.empty() && std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  };
  const std::string type = module.name();
  const std::string bare = type.ends_with("Impl") && type.size() > 4 ? type.substr(0, type.size() - 4) : type;
  auto last = [](const std::string& n) {
    const auto colon = n.rfind("::");
    return colon == std::string::npos ? n : n.substr(colon + 2);
  };
  for (const auto& n : {type, bare, last(type), last(bare)}) add(n);
  return names;
}

bool ModuleTree::is_class(torch::nn::Module& module, const std::vector<std::string>& names) const {
  if (names.empty()) return false;
  for (const auto& n : class_names(module))
    if (std::find(names.begin(), names.end(), n) != names.end()) return true;
  return false;
}

}  // namespace accel::big_model
