#include "accel/unit/unit.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "accel/util/check.h"

namespace accel {

namespace {

// Which modules are units. A live slot holds its module, so a module whose
// entry has a live slot cannot have been freed and its address reused.
struct Registry {
  std::mutex mutex;
  std::unordered_map<const torch::nn::Module*, std::weak_ptr<UnitSlot>> slots;
};

Registry& registry() {
  static Registry r;
  return r;
}

// "gpt2::BlockImpl" -> "gpt2::Block"; names without the suffix are kept.
std::string without_impl(const std::string& name) {
  const std::string suffix = "Impl";
  if (name.size() > suffix.size() && name.ends_with(suffix)) return name.substr(0, name.size() - suffix.size());
  return name;
}

std::string without_namespace(const std::string& name) {
  const auto colon = name.rfind("::");
  return colon == std::string::npos ? name : name.substr(colon + 2);
}

}  // namespace

UnitHooks::~UnitHooks() = default;

UnitSlot::UnitSlot(std::shared_ptr<torch::nn::Module> module, std::string class_name)
    : module_(std::move(module)), class_name_(std::move(class_name)) {
  if (class_name_.empty()) class_name_ = module_->name();
}

UnitSlot::~UnitSlot() {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.slots.find(module_.get());
  if (it != r.slots.end() && it->second.expired()) r.slots.erase(it);
}

std::vector<std::string> UnitSlot::class_names() const {
  std::vector<std::string> names;
  auto add = [&](const std::string& n) {
    if (!n.empty() && std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  };
  add(class_name_);
  const std::string type = module_->name();
  for (const auto& n : {type, without_impl(type), without_namespace(type), without_namespace(without_impl(type))})
    add(n);
  return names;
}

bool UnitSlot::matches(const std::string& name) const {
  const auto names = class_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

void UnitSlot::set_hooks(std::shared_ptr<UnitHooks> hooks) {
  ACCEL_CHECK_STATE(!hooks || !hooks_, "unit ", class_name_,
                    ": another mode already acts on this unit (a model prepared twice, or by two Accelerators)");
  hooks_ = std::move(hooks);
}

std::shared_ptr<UnitSlot> register_unit(std::shared_ptr<torch::nn::Module> module, std::string class_name) {
  ACCEL_CHECK_ARG(module, "accel::Unit: the module is empty (a null module holder)");
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  auto& entry = r.slots[module.get()];
  ACCEL_CHECK_STATE(entry.expired(), "accel::Unit: module ", module->name(),
                    " is already a unit; copy that Unit instead of wrapping the module again");
  auto slot = std::make_shared<UnitSlot>(std::move(module), std::move(class_name));
  entry = slot;
  return slot;
}

std::vector<FoundUnit> find_units(torch::nn::Module& model) {
  std::vector<FoundUnit> found;
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  for (const auto& item : model.named_modules(/*name_prefix=*/"", /*include_self=*/true)) {
    auto it = r.slots.find(item.value().get());
    if (it == r.slots.end()) continue;
    if (auto slot = it->second.lock()) found.push_back({item.key(), std::move(slot)});
  }
  return found;
}

}  // namespace accel
